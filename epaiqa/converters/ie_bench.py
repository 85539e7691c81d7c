"""IE-Bench (Sun et al. 2025; released as IE-Bench-4k): source/edited pairs, edit instruction, overall MOS 1–5.

Two on-disk layouts are read (the label files when SRC has any, else every ``*.json`` / ``*.jsonl``):

* **The authors' label files** (IE-R1-4K, as littlespray/QAlign reads them: ``qalign_json_dual.py`` and
  ``split_data.py`` at commit 707f4fb): ``train.txt`` / ``val.txt`` / ``test.txt`` with one edit a line,
  ``NAME|INSTRUCTION|SOURCE_CAPTION|TARGET_CAPTION|MOS`` (the MOS is the last field), the source image at
  ``src/NAME`` (or ``src_<split>/NAME``) and the edited one at ``dst/NAME`` (or ``dst_<split>/NAME``).
* **The Hugging Face rows** (Coobiw/IE-Bench-4k as Coobiw/IE-Critic-R1 ``scripts/iebench_eval.py`` reads them,
  commit 357c239) exported to ``*.json`` / ``*.jsonl``: ``images`` = [source, edited], ``edit_inst``, ``answer``
  (the MOS), optional ``id``.

The MOS is the overall quality on 1–5 (the authors' scoring prompt: "a float between 1 and 5"), the paper's
``overall`` on the paper's scale: it goes to ``mos.overall`` unchanged; a value outside 1–5 is refused. IE-Bench
ships no box, mask or edit type: boxes come from the source/edited difference, edit_type is ``unknown``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from epaiqa.converters.base import Builder, Converter, Loc, Record, read_records, read_text, shown

NAME = "ie-bench"
VERSION = (
    "IE-Bench / IE-Bench-4k: label files as littlespray/QAlign qalign_json_dual.py + split_data.py (commit 707f4fb) "
    "read them; HF rows as Coobiw/IE-Critic-R1 scripts/iebench_eval.py (commit 357c239) reads them"
)
LABEL_FILES = ("train.txt", "val.txt", "test.txt")
MOS_SCALE = (1.0, 5.0)


def read(src: Path, out: Builder) -> None:
    """Every label file (or JSON export) of SRC."""
    out.dimension(
        "overall",
        MOS_SCALE,
        "IE-Bench's MOS: overall quality of the edit given the source and the instruction, 1 (very poor) to 5",
        "overall",
        "as given: same meaning and the paper's 1–5 scale",
    )
    splits: dict[str, list[str]] = defaultdict(list)
    if src.is_file():
        files = [src]
    else:
        files = [src / n for n in LABEL_FILES if (src / n).is_file()]
        files = files or sorted([*src.glob("*.json"), *src.glob("*.jsonl")])
    if not files:
        Loc(str(src)).fail("src", f"no label file ({', '.join(LABEL_FILES)}) or *.json / *.jsonl export found")
    for path in files:
        split = path.stem
        if path.suffix.lower() in (".json", ".jsonl"):
            for index, rec in enumerate(read_records(path, src)):
                splits[split].append(_hf_row(rec, index, split, out))
        else:
            for rec in _label_lines(path, src):
                splits[split].append(_label_row(rec, split, out))
    out.info["benchmark_splits"] = {name: ids for name, ids in splits.items()}


def _label_lines(path: Path, src: Path) -> list[Record]:
    name = shown(path, src)
    records = []
    for lineno, raw in enumerate(read_text(path, src).splitlines(), start=1):
        if not raw.strip():
            continue
        parts = raw.strip().split("|")
        loc = Loc(name, lineno)
        if len(parts) < 3:
            loc.fail("line", "expected NAME|INSTRUCTION|SOURCE_CAPTION|TARGET_CAPTION|MOS")
        records.append(Record({"name": parts[0].strip(), "instruction": parts[1].strip(), "mos": parts[-1]}, loc))
    return records


def _label_row(rec: Record, split: str, out: Builder) -> str:
    name = rec.text("name")
    base = out.src if out.src.is_dir() else out.src.parent

    def find(folders: tuple[str, ...]) -> str:
        found = [f"{folder}/{name}" for folder in folders if os.path.isfile(base / folder / name)]
        return found[0] if found else f"{folders[-1]}/{name}"

    source = out.image(find((f"src_{split}", "src")), rec.loc, "name")
    edited = out.image(find((f"dst_{split}", "dst")), rec.loc, "name")
    mos = rec.scored("mos", MOS_SCALE, "IE-Bench's MOS")
    prompt = rec.text("instruction")
    return out.sample(rec.loc, Path(name).stem, source, edited, prompt, mos={"overall": mos}, fields=("name", "name"))


def _hf_row(rec: Record, index: int, split: str, out: Builder) -> str:
    images = rec.value("images")
    if not isinstance(images, list) or len(images) != 2:
        rec.loc.fail("images", "must be a list of two images: [source, edited]")
    source = out.image(images[0], rec.loc, "images[0]")
    edited = out.image(images[1], rec.loc, "images[1]")
    mos = rec.scored("answer", MOS_SCALE, "IE-Bench's MOS")
    raw_id = rec.data.get("id")
    sample_id = str(raw_id) if raw_id not in (None, "") else f"{split}_{index:05d}"
    prompt, fields = rec.text("edit_inst"), ("images[0]", "images[1]")
    return out.sample(rec.loc, sample_id, source, edited, prompt, mos={"overall": mos}, fields=fields)


CONVERTER = Converter(NAME, VERSION, read)
