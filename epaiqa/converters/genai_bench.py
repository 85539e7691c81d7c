"""GenAI-Bench image editing (TIGER-Lab, Jiang et al. 2024): GenAI-Arena votes between two edits of one source.

Followed: TIGER-AI-Lab/GenAI-Bench at commit f0b0334, ``inference.py`` (``load_dataset("TIGER-Lab/GenAI-Bench",
"image_edition", split="test_v1")``, votes ``leftvote`` / ``rightvote`` / ``tievote`` / ``bothbad_vote``) and
``inference_configs.json`` (the image_edition fields). Each row, exported to ``*.json`` / ``*.jsonl`` with images
as paths inside SRC, ``data:`` URIs or ``{"bytes": base64}``: ``source_prompt``, ``target_prompt``,
``instruct_prompt``, ``source_image``, ``left_output_image``, ``right_output_image``, ``vote_type``, optional
``left_model`` / ``right_model`` and ``split``.

The left output is candidate A, the right B. ``leftvote`` ranks A first, ``rightvote`` B; ``tievote`` (both good)
and ``bothbad_vote`` are ties, told apart by ``label``, the raw vote. The vote is an overall preference:
dimension ``overall``, ranks only. The prompt is ``instruct_prompt`` (``target_prompt`` when it is empty).
"""

from __future__ import annotations

from pathlib import Path

from epaiqa.converters.base import Builder, Converter, Record, read_records, record_files
from epaiqa.data.preferences import PreferenceGroup

NAME = "genai-bench"
VERSION = "TIGER-AI-Lab/GenAI-Bench commit f0b0334: inference.py + inference_configs.json (image_edition, test_v1)"
DIMENSION = "overall"
VOTES = ("leftvote", "rightvote", "tievote", "bothbad_vote")


def read(src: Path, out: Builder) -> None:
    """Every JSON / JSONL file of SRC."""
    out.dimension(
        DIMENSION,
        None,
        "GenAI-Arena vote between two edits: left better, right better, tie (both good) or both bad",
        "overall",
        "ranks only: a vote orders two candidates, no score on the paper's 1–5 scale is derived",
    )
    count = 0
    for path in record_files(src, ("*.json", "*.jsonl"), "GenAI-Bench JSON / JSONL files"):
        for rec in read_records(path, src):
            _row(rec, f"genai_{count:05d}", out)
            count += 1


def _row(rec: Record, group_id: str, out: Builder) -> None:
    vote = rec.text("vote_type").strip()
    if vote not in VOTES:
        rec.loc.fail("vote_type", f"unknown vote label {vote!r} (expected {', '.join(VOTES)})")
    prompt = rec.text("instruct_prompt", rec.text("target_prompt", ""))
    if not prompt:
        rec.loc.fail("instruct_prompt", "missing (and no target_prompt either)")
    source = out.image(rec.value("source_image"), rec.loc, "source_image")
    a, b = (
        out.sample(
            rec.loc,
            f"{group_id}_{letter}",
            source,
            out.image(rec.value(f"{side}_output_image"), rec.loc, f"{side}_output_image"),
            prompt,
            editor=str(rec.data.get(f"{side}_model") or "unknown"),
            fields=("source_image", f"{side}_output_image"),
        )
        for letter, side in (("A", "left"), ("B", "right"))
    )
    tiers = {"leftvote": ((a,), (b,)), "rightvote": ((b,), (a,))}.get(vote, ((a, b),))
    split = str(rec.data.get("split") or "")
    out.group(rec.loc, PreferenceGroup(group_id, DIMENSION, (a, b), tiers, vote, split))


CONVERTER = Converter(NAME, VERSION, read)
