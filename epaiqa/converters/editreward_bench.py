"""EditReward-Bench (TIGER-Lab, Wu et al. 2025): 2, 3 or 4 edits of one source and instruction, ranked by humans.

Followed: TIGER-AI-Lab/EditReward at commit edb027e, ``EditReward/evaluate/eval_bench.py`` (files and the
``ranking`` grammar) and ``inference_{2,3,4}pair_hf.py`` (the Hugging Face rows of TIGER-Lab/EditReward-Bench).
Two on-disk layouts, told apart per record:

* **eval_bench.py's files** ``EditReward_Bench_{2,3,4}pair.json``: one group a record, ``prompt``, ``path_src``,
  ``paths_generated`` (2–4 images, candidates A, B, C, D in order) and ``human_vote.ranking``: ``A>B``, ``B>A``,
  ``A<B``, ``A=B=Good``, ``A=B=Bad``, ``C>A>B``...
* **The Hugging Face rows** exported to ``*.json`` / ``*.jsonl`` (images as paths inside SRC, ``data:`` URIs or
  ``{"bytes": base64}``): one *pair* a row, ``instruction``, ``dataset`` (``2pair``...), ``source_image``,
  ``candidate_1``, ``candidate_2``, ``ranking`` (``A>C``...), ``comparison_type`` (``AvsC``), optional
  ``score_1`` / ``score_2`` and ``model_1`` / ``model_2``. Rows of one source, instruction and subset are joined
  back into one group when their pairs make a strict order (``C>A>B``, kept with the raw pair labels); otherwise
  each row stays a 2-candidate group.

The ranking is an overall human preference (EditReward ranks by instruction following and visual quality
together): dimension ``overall``, ranks only, no score derived. The per-candidate ``score_*`` of the rows go to
``other_mos.editreward_score`` as given; their scale is not stated by the benchmark (``dataset.json`` records
the range seen). Ties (``A=B``, ``A=B=Good``, ``A=B=Bad``) are tiers of both candidates; ``label`` keeps which.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epaiqa.converters.base import (
    Builder,
    Converter,
    Loc,
    Placed,
    Record,
    number,
    read_records,
    record_files,
    safe_id,
)
from epaiqa.data.preferences import PreferenceGroup, tiers_from_ranking

NAME = "editreward-bench"
VERSION = (
    "TIGER-AI-Lab/EditReward commit edb027e: EditReward/evaluate/eval_bench.py (EditReward_Bench_*pair.json, "
    "human_vote.ranking) and inference_{2,3,4}pair_hf.py (HF dataset TIGER-Lab/EditReward-Bench rows)"
)
DIMENSION = "overall"
SCORE = "editreward_score"
_TIE_NOTE = re.compile(r"^(?P<tie>[A-Za-z](\s*=\s*[A-Za-z])+)\s*=\s*(good|bad)$", re.IGNORECASE)
_PAIR = re.compile(r"^([A-Z])vs([A-Z])$")


def _core(label: str) -> str:
    """The ranking without a tie's ``=Good`` / ``=Bad`` note, upper case."""
    text = label.strip()
    if (m := _TIE_NOTE.match(text)) is not None:
        text = m["tie"]
    return text.upper()


def ranking_tiers(label: str, candidates: list[str], loc: Loc, field: str) -> tuple[tuple[str, ...], ...]:
    """Tiers from a ranking label; ``A=B=Good`` / ``A=B=Bad`` are the tie ``A=B`` (the label keeps which)."""
    try:
        return tiers_from_ranking(_core(label), candidates)
    except ValueError as exc:
        loc.fail(field, f"unknown vote label {label!r}: {exc}")


def read(src: Path, out: Builder) -> None:
    """Every JSON / JSONL file of SRC."""
    out.dimension(
        DIMENSION,
        None,
        "human ranking of the candidate edits by overall quality (instruction following and visual quality)",
        "overall",
        "ranks only: groups order candidates, no score on the paper's 1–5 scale is derived",
    )
    rows: list[Record] = []
    for path in record_files(src, ("*.json", "*.jsonl"), "EditReward-Bench JSON / JSONL files"):
        subset = m.group(0) if (m := re.search(r"\dpair", path.stem)) else path.stem
        for index, rec in enumerate(read_records(path, src)):
            if "paths_generated" in rec.data:
                _eval_bench_item(rec, f"{subset}_{index:04d}", out)
            elif "candidate_1" in rec.data:
                rows.append(rec)
            else:
                rec.loc.fail("json", "neither eval_bench.py's paths_generated nor the HF rows' candidate_1")
    if rows:
        _hf_rows(rows, out)


def _eval_bench_item(rec: Record, group_id: str, out: Builder) -> None:
    paths = rec.value("paths_generated")
    if not isinstance(paths, list) or not 2 <= len(paths) <= 4:
        rec.loc.fail("paths_generated", "must be a list of 2 to 4 edited images")
    vote = rec.value("human_vote")
    if not isinstance(vote, dict):
        rec.loc.fail("human_vote", "must be an object with a 'ranking'")
    label = Record(vote, rec.loc).text("ranking")
    prompt = rec.text("prompt")
    source = out.image(rec.value("path_src"), rec.loc, "path_src")
    ids = []
    for i, path in enumerate(paths):
        field = f"paths_generated[{i}]"
        edited = out.image(path, rec.loc, field)
        ids.append(out.sample(rec.loc, f"{group_id}_{chr(65 + i)}", source, edited, prompt, fields=("path_src", field)))
    tiers = ranking_tiers(label, ids, rec.loc, "human_vote.ranking")
    subset = f"{len(ids)}pair"
    out.group(rec.loc, PreferenceGroup(group_id, DIMENSION, tuple(ids), tiers, label, extra={"subset": subset}))


@dataclass
class _Group:
    """The rows of one source, instruction and subset."""

    id: str
    loc: Loc
    prompt: str
    source: Placed
    subset: str
    candidates: dict[str, str] = field(default_factory=dict)  # letter -> sample id
    edited: dict[str, str] = field(default_factory=dict)  # letter -> image in the root
    scores: dict[str, float] = field(default_factory=dict)
    pairs: list[tuple[Record, str, tuple[str, str], tuple[tuple[str, ...], ...]]] = field(default_factory=list)


def _hf_rows(rows: list[Record], out: Builder) -> None:
    groups: dict[tuple[str, str, str], _Group] = {}
    per_subset: Counter[str] = Counter()
    for rec in rows:
        prompt, subset = rec.text("instruction"), safe_id(rec.text("dataset", "2pair"))
        source = out.image(rec.value("source_image"), rec.loc, "source_image")
        key = (subset, prompt, source.rel)
        if key not in groups:
            groups[key] = _Group(f"{subset}_{per_subset[subset]:04d}", rec.loc, prompt, source, subset)
            per_subset[subset] += 1
        group = groups[key]
        pair = rec.text("comparison_type", "AvsB")
        if (m := _PAIR.match(pair)) is None or m[1] == m[2]:
            rec.loc.fail("comparison_type", f"must name two candidates like 'AvsC', got {pair!r}")
        letters = (m[1], m[2])
        for slot, letter in enumerate(letters, start=1):
            _candidate(rec, slot, letter, group, out)
        label = rec.text("ranking")
        if set(re.findall(r"[A-Z]", _core(label))) != set(letters):
            rec.loc.fail("ranking", f"unknown vote label {label!r} for the candidates {pair!r}")
        as_ab = _core(label).translate(str.maketrans({letters[0]: "A", letters[1]: "B"}))
        ids = (group.candidates[letters[0]], group.candidates[letters[1]])
        group.pairs.append((rec, label, ids, ranking_tiers(as_ab, list(ids), rec.loc, "ranking")))
    for group in groups.values():
        _group_from_pairs(group, out)


def _candidate(rec: Record, slot: int, letter: str, group: _Group, out: Builder) -> None:
    image = out.image(rec.value(f"candidate_{slot}"), rec.loc, f"candidate_{slot}")
    score: Any = rec.data.get(f"score_{slot}")
    if score is not None:
        score = number(score, rec.loc, f"score_{slot}")
        if group.scores.setdefault(letter, score) != score:
            rec.loc.fail(f"score_{slot}", f"{score:g} differs from {group.scores[letter]:g} given for {letter} before")
    if letter in group.candidates:
        if group.edited[letter] != image.rel:
            rec.loc.fail(f"candidate_{slot}", f"is not the image given for candidate {letter} before")
        return
    other = {SCORE: score} if score is not None else {}
    editor = str(rec.data.get(f"model_{slot}") or "unknown")
    group.candidates[letter] = out.sample(
        rec.loc,
        f"{group.id}_{letter}",
        group.source,
        image,
        group.prompt,
        editor=editor,
        other_mos=other,
        fields=("source_image", f"candidate_{slot}"),
    )
    group.edited[letter] = image.rel
    if other:
        out.dimension(
            SCORE,
            None,
            "the per-candidate human score EditReward-Bench ships with each row (score_1 / score_2)",
            None,
            "kept as given; the benchmark does not state its scale, so it is not mapped to a paper dimension",
        )


def _group_from_pairs(group: _Group, out: Builder) -> None:
    letters = sorted(group.candidates)
    order = _strict_order(group, letters)
    if order is not None:
        ids = tuple(group.candidates[x] for x in letters)
        tiers = tuple((group.candidates[x],) for x in order)
        label = ">".join(order) if len(group.pairs) > 1 else group.pairs[0][1]
        extra = {"subset": group.subset, "pairs": [p[1] for p in group.pairs]}
        out.group(group.loc, PreferenceGroup(group.id, DIMENSION, ids, tiers, label, extra=extra))
        return
    for rec, label, ids, tiers in group.pairs:  # a tie, or pairs that make no strict order: one group a row
        pair_id = group.id if len(group.pairs) == 1 else f"{group.id}_{rec.text('comparison_type', 'AvsB')}"
        out.group(rec.loc, PreferenceGroup(pair_id, DIMENSION, ids, tiers, label, extra={"subset": group.subset}))


def _strict_order(group: _Group, letters: list[str]) -> list[str] | None:
    """The candidates best first when the pairs compare every two exactly once and make a strict order, else None."""
    wins = dict.fromkeys(letters, 0)
    seen = set()
    for _, _, _, tiers in group.pairs:
        if len(tiers) != 2:
            return None  # a tie
        winner, loser = tiers[0][0], tiers[1][0]
        seen.add(frozenset((winner, loser)))
        wins[next(x for x in letters if group.candidates[x] == winner)] += 1
    complete = len(group.pairs) == len(seen) == len(list(itertools.combinations(letters, 2)))
    if not complete or sorted(wins.values()) != list(range(len(letters))):
        return None  # a pair missing or repeated, or a cycle
    return sorted(letters, key=lambda x: -wins[x])


CONVERTER = Converter(NAME, VERSION, read)
