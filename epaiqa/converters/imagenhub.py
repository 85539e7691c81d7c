"""ImagenHub human evaluation of image editing (TIGER-Lab, Ku et al. 2024): per-rater TSVs of ``[SC, PQ]`` cells.

Followed: TIGER-AI-Lab/ImagenHub at commit 439f72c: ``eval/human_ratings/Text-Guided_IE/*_rater{1,2,3}.tsv`` (a
``uid`` column, then one column per model, cells ``[SC, PQ]`` with values 0, 0.5 or 1), ``docs/Guidelines/
humaneval.md`` (what SC and PQ mean), ``eval/human_ratings/AnalyzeHumanEval.ipynb`` (the overall of a rating is
``sqrt(SC·PQ)``, averaged over raters) and ``src/imagen_hub/benchmark/text_guided_ie.py`` / ``mask_guided_ie.py``
(the results folder: ``dataset_lookup.json`` with each uid's ``instruction``, sources in ``input/UID``, each
model's edit in ``MODEL/UID``, and for mask-guided editing the mask in ``mask/UID``).

SRC is that results folder (``results/ImagenHub_Text-Guided_IE``) with the rater TSVs copied anywhere inside it
(any ``*rater*.tsv``). A sample is one model's edit of one uid. Per sample: ``sc`` and ``pq`` are the means of the
raters' cells (an empty cell is no rating), ``imagenhub_overall`` the mean of the raters' ``sqrt(SC·PQ)``; all three
on ImagenHub's 0–1 scale under ``other_mos`` (none means the paper's overall, harmony or naturalness, so none is
mapped or rescaled). A shipped mask (white = edited) gives the box; otherwise the source/edited difference does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from pathlib import Path

from epaiqa.converters.base import Builder, Converter, Loc, Record, read_text, shown

NAME = "imagenhub"
VERSION = (
    "TIGER-AI-Lab/ImagenHub commit 439f72c: eval/human_ratings/*/..._rater*.tsv, docs/Guidelines/humaneval.md, "
    "eval/human_ratings/AnalyzeHumanEval.ipynb (overall = sqrt(SC*PQ) per rating, averaged), "
    "src/imagen_hub/benchmark/text_guided_ie.py (results folder layout)"
)
LOOKUP = "dataset_lookup.json"
LEVELS = (0.0, 0.5, 1.0)


def read(src: Path, out: Builder) -> None:
    """The rater TSVs, the lookup and the images of an ImagenHub results folder."""
    if not src.is_dir():
        Loc(str(src)).fail("src", "must be an ImagenHub results folder (dataset_lookup.json, input/, MODEL/)")
    _dimensions(out)
    prompts = _lookup(src)
    tsvs = sorted(p for p in src.rglob("*.tsv") if "rater" in p.name.lower())
    if not tsvs:
        Loc(str(src)).fail("src", "no rater TSV (*rater*.tsv) found")
    ratings: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    first: dict[tuple[str, str], Loc] = {}
    for path in tsvs:
        for (uid, model), (sc, pq), loc in _cells(path, src):
            ratings[uid, model].append((sc, pq))
            first.setdefault((uid, model), loc)
    for (uid, model), cells in ratings.items():
        loc = first[uid, model]
        if uid not in prompts:
            loc.fail("uid", f"{uid!r} is not in {LOOKUP}")
        rec = Record(prompts[uid], loc)
        prompt = rec.text("instruction")
        mask = out.image(f"mask/{uid}", loc, "mask") if os.path.isfile(src / "mask" / uid) else None
        n = len(cells)
        other = {
            "sc": sum(c[0] for c in cells) / n,
            "pq": sum(c[1] for c in cells) / n,
            "imagenhub_overall": sum(math.sqrt(c[0] * c[1]) for c in cells) / n,
        }
        source, edited = out.image(f"input/{uid}", loc, "uid"), out.image(f"{model}/{uid}", loc, model)
        sample_id = f"{model}_{Path(uid).stem}"
        fields = ("uid", model)
        out.sample(loc, sample_id, source, edited, prompt, editor=model, other_mos=other, mask=mask, fields=fields)
    out.info["raters"] = [shown(p, src) for p in tsvs]


def _dimensions(out: Builder) -> None:
    how = "mean over raters, kept on ImagenHub's 0–1 scale; not a paper dimension, so not mapped or rescaled"
    out.dimension("sc", (0, 1), "semantic consistency: how far the edit follows the instruction (0, 0.5, 1)", None, how)
    out.dimension("pq", (0, 1), "perceptual quality: how genuine the edited image looks (0, 0.5, 1)", None, how)
    out.dimension(
        "imagenhub_overall",
        (0, 1),
        "ImagenHub's overall: sqrt(SC·PQ) of each rating",
        None,
        "mean over raters of sqrt(SC·PQ), as AnalyzeHumanEval.ipynb; a 0–1 score, not the paper's 1–5 overall",
    )


def _lookup(src: Path) -> dict[str, dict]:
    path = src / LOOKUP
    if not path.is_file():
        Loc(str(src)).fail("src", f"{LOOKUP} not found (ImagenHub writes it beside input/)")
    try:
        data = json.loads(read_text(path, src))
    except json.JSONDecodeError as exc:
        Loc(LOOKUP, exc.lineno).fail("json", f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        Loc(LOOKUP, 1).fail("json", "must map each uid to an object of its attributes")
    return data


def _cells(path: Path, src: Path) -> list[tuple[tuple[str, str], tuple[float, float], Loc]]:
    """Every rated cell of one rater's TSV: ((uid, model), (SC, PQ), where)."""
    name = shown(path, src)
    rows = list(csv.reader(io.StringIO(read_text(path, src)), delimiter="\t"))
    if not rows or not rows[0] or rows[0][0].strip().lower() != "uid":
        Loc(name, 1).fail("header", "must start with a 'uid' column, then one column per model")
    models = [m.strip() for m in rows[0][1:]]
    if not all(models):
        Loc(name, 1).fail("header", "a model column has no name")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        loc = Loc(name, lineno)
        if len(row) != len(models) + 1:
            loc.fail("row", f"has {len(row)} cells, the header {len(models) + 1}")
        uid = row[0].strip()
        if not uid:
            loc.fail("uid", "missing")
        for model, cell in zip(models, row[1:], strict=True):
            if cell.strip():
                out.append(((uid, model), _cell(cell, loc, model), loc))
    return out


def _cell(cell: str, loc: Loc, model: str) -> tuple[float, float]:
    try:
        value = json.loads(cell)
    except json.JSONDecodeError:
        value = None
    ok = isinstance(value, list) and len(value) == 2
    if not ok or not all(not isinstance(v, bool) and isinstance(v, (int, float)) and v in LEVELS for v in value):
        loc.fail(model, f"cell {cell.strip()!r} is not [SC, PQ] with values 0, 0.5 or 1")
    return float(value[0]), float(value[1])


CONVERTER = Converter(NAME, VERSION, read)
