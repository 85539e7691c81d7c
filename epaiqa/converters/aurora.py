"""AURORA-Bench human ratings (McGill-NLP, Krojer et al. 2024): one rated edit a record, pointwise.

Followed: TIGER-AI-Lab/EditReward at commit edb027e, ``EditReward/evaluate/eval_bench.py``
``evaluate_aurora_from_json_pointwise`` (a JSON list of ``prompt``, ``input``, ``gen``, ``score``, optional
``model`` and ``filename``), for the ratings McGill-NLP/AURORA's README (commit aa5778f, "Human Ratings") links.
``*.jsonl`` with the same fields is read too. ``input`` and ``gen`` are images inside SRC (paths, ``data:`` URIs or
``{"bytes": base64}``).

Neither source states the rating scale, so ``score`` is not mapped to a paper dimension: it goes to
``other_mos.aurora_score`` exactly as given, and ``dataset.json`` records the range the file spans.
"""

from __future__ import annotations

from pathlib import Path

from epaiqa.converters.base import Builder, Converter, Record, read_records, record_files

NAME = "aurora"
VERSION = (
    "TIGER-AI-Lab/EditReward commit edb027e: EditReward/evaluate/eval_bench.py evaluate_aurora_from_json_pointwise "
    "(prompt, input, gen, score, model), for the human ratings of McGill-NLP/AURORA (README, commit aa5778f)"
)
SCORE = "aurora_score"


def read(src: Path, out: Builder) -> None:
    """Every JSON / JSONL file of SRC."""
    out.dimension(
        SCORE,
        None,
        "AURORA-Bench human rating of one edit (how well the edit carries out the instruction)",
        None,
        "kept as given: the release states no scale, so it is neither mapped to the paper's overall nor rescaled",
    )
    count = 0
    for path in record_files(src, ("*.json", "*.jsonl"), "AURORA rating JSON / JSONL files"):
        for rec in read_records(path, src):
            _row(rec, f"aurora_{count:05d}", out)
            count += 1


def _row(rec: Record, sample_id: str, out: Builder) -> None:
    score = rec.number("score")
    source = out.image(rec.value("input"), rec.loc, "input")
    edited = out.image(rec.value("gen"), rec.loc, "gen")
    editor = str(rec.data.get("model") or "unknown")
    out.sample(
        rec.loc,
        sample_id,
        source,
        edited,
        rec.text("prompt"),
        editor=editor,
        other_mos={SCORE: score},
        fields=("input", "gen"),
    )


CONVERTER = Converter(NAME, VERSION, read)
