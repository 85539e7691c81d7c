"""EditScore's EditReward-Bench (VectorSpaceLab, arXiv 2509.23909): pairs of edits, the first preferred, per dimension.

Followed: VectorSpaceLab/EditScore at commit 6e0f1b9, ``evaluation.py`` (``load_dataset("EditScore/EditReward-Bench",
split="train")``) and ``calculate_statistics.py`` (a pair is right when the *first* output scores higher). Each
row, exported to ``*.json`` / ``*.jsonl`` with images as paths inside SRC, ``data:`` URIs or ``{"bytes": base64}``:
``key`` = [key of output 1, key of output 2], ``instruction``, ``input_image``, ``output_images`` (two images,
the first preferred by humans), ``dimension`` (``prompt_following``, ``consistency`` or ``overall``) and
``task_type``. An output keeps one sample however many rows name its key.

Dimensions are the benchmark's own, ranks only: ``overall`` (overall preference) maps to the paper's overall;
``prompt_following`` and ``consistency`` do not (the paper's completion levels and harmony are other questions),
so they keep their names. The label of every group is ``A>B``; ``task_type`` is kept on the group.
"""

from __future__ import annotations

from pathlib import Path

from epaiqa.converters.base import Builder, Converter, Record, read_records, record_files, safe_id
from epaiqa.data.preferences import PreferenceGroup

NAME = "editscore"
VERSION = (
    "VectorSpaceLab/EditScore commit 6e0f1b9: evaluation.py + calculate_statistics.py "
    "(HF dataset EditScore/EditReward-Bench)"
)
DIMENSIONS: dict[str, tuple[str, str | None, str]] = {
    "prompt_following": (
        "which output follows the instruction better",
        None,
        "ranks only; not the paper's completion (three levels of one edit), so not mapped",
    ),
    "consistency": (
        "which output keeps the unedited content of the input better",
        None,
        "ranks only; not the paper's harmony or naturalness, so not mapped",
    ),
    "overall": (
        "which output is better overall",
        "overall",
        "ranks only: same meaning as the paper's overall; no score on its 1–5 scale is derived",
    ),
}


def read(src: Path, out: Builder) -> None:
    """Every JSON / JSONL file of SRC."""
    made: dict[str, str] = {}  # output key -> its edited image in the root
    for path in record_files(src, ("*.json", "*.jsonl"), "EditScore EditReward-Bench JSON / JSONL files"):
        for rec in read_records(path, src):
            _row(rec, made, out)


def _row(rec: Record, made: dict[str, str], out: Builder) -> None:
    keys, outputs = rec.value("key"), rec.value("output_images")
    if not isinstance(keys, list) or len(keys) != 2 or not all(isinstance(k, str) and k for k in keys):
        rec.loc.fail("key", "must be two output keys")
    if keys[0] == keys[1]:
        rec.loc.fail("key", f"names the output {keys[0]!r} twice")
    if not isinstance(outputs, list) or len(outputs) != 2:
        rec.loc.fail("output_images", "must be two images, the preferred one first")
    dimension = rec.text("dimension")
    meaning, maps_to, how = DIMENSIONS.get(dimension, (f"EditScore's dimension {dimension!r}", None, "ranks only"))
    out.dimension(dimension, None, f"human preference between two edits: {meaning}", maps_to, how)
    prompt = rec.text("instruction")
    source = out.image(rec.value("input_image"), rec.loc, "input_image")
    ids = []
    for i, (key, image) in enumerate(zip(keys, outputs, strict=True)):
        edited = out.image(image, rec.loc, f"output_images[{i}]")
        if key in made:
            if made[key] != edited.rel:
                rec.loc.fail(f"output_images[{i}]", f"is not the image given for key {key!r} before")
        else:
            made[key] = edited.rel
            out.sample(rec.loc, key, source, edited, prompt, fields=("input_image", f"output_images[{i}]"))
        ids.append(safe_id(key))
    group_id = f"{safe_id(keys[0])}__{safe_id(keys[1])}__{dimension}"
    extra = {"task_type": str(rec.data["task_type"])} if rec.data.get("task_type") else {}
    group = PreferenceGroup(group_id, dimension, tuple(ids), ((ids[0],), (ids[1],)), "A>B", extra=extra)
    out.group(rec.loc, group)


CONVERTER = Converter(NAME, VERSION, read)
