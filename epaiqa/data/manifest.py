"""Reading, validating and writing ``manifest.jsonl`` (DESIGN.md §4).

Every problem is reported as ``manifest.jsonl:LINE: field: message``; nothing raises a traceback on
bad input. :func:`load_manifest` raises :class:`~epaiqa.errors.DataError` carrying all problems.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from epaiqa.data.images import check_image
from epaiqa.data.schema import (
    BBOX_SOURCES,
    COT_FIELDS,
    MANIFEST,
    MANIFEST_EDIT_TYPES,
    PREFERENCES,
    SCORE_RANGES,
    SPLITS,
    PAISample,
)
from epaiqa.data.splits import splits_problems
from epaiqa.data.validated import ValidatedImages
from epaiqa.errors import DataError
from epaiqa.io import atomic_write_text

REQUIRED = ("id", "source", "edited", "prompt", "bbox", "edit_type")
BBOX_TOLERANCE = 1e-3
#: bounds on texts whose size drives memory (tokenised into every question; EPAIQA-15K's prompts are one sentence)
MAX_PROMPT_CHARS = 1_000
MAX_COT_CHARS = 8_000
#: the smallest width and height of a source or edited image (a 1x1 image has no region, crop or patch to read)
MIN_IMAGE_SIDE = 8
#: a manifest line longer than this is refused before it is parsed
MAX_LINE_CHARS = 64_000


@dataclass(frozen=True)
class Problem:
    """One validation problem, located by file, line and field."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


def resolve_inside(root: Path, relpath: str) -> Path:
    """``root / relpath``, or ValueError if the path is absolute or leaves the root."""
    if not relpath or Path(relpath).is_absolute() or relpath.startswith(("/", "\\")) or ":" in relpath[:3]:
        raise ValueError(f"{relpath!r} must be a path relative to the dataset root")
    base = _real(str(root))
    parts = Path(relpath).parts
    resolved = os.path.join(base, *parts)
    # the root is real already: only a link or '..' inside the relative part can lead elsewhere
    if ".." in parts or any(os.path.islink(os.path.join(base, *parts[: i + 1])) for i in range(len(parts))):
        resolved = os.path.realpath(resolved)
    if resolved != base and not resolved.startswith(base.rstrip(os.sep) + os.sep):
        raise ValueError(f"{relpath!r} leaves the dataset root")
    return Path(resolved)


@functools.lru_cache(maxsize=16)
def _real(root: str) -> str:
    """The root's real path (resolved once per process: a sweep job checks thousands of paths against it)."""
    return os.path.realpath(root)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_bbox(bbox: Any) -> str | None:
    """What is wrong with a bbox ⟨x, y, z1, z2⟩ (four numbers in [0, 1], inside the image), or None."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"must be four numbers [x, y, width, height], got {bbox!r}"
    x, y, w, h = bbox
    if not all(0.0 <= v <= 1.0 for v in bbox):
        return f"values must lie in [0, 1], got {bbox!r}"
    if w <= 0 or h <= 0:
        return f"width and height must be positive, got {bbox!r}"
    if x - w / 2 < -BBOX_TOLERANCE or x + w / 2 > 1 + BBOX_TOLERANCE:
        return f"box leaves the image horizontally (x ± width/2 = {x - w / 2:.4f}..{x + w / 2:.4f})"
    if y - h / 2 < -BBOX_TOLERANCE or y + h / 2 > 1 + BBOX_TOLERANCE:
        return f"box leaves the image vertically (y ± height/2 = {y - h / 2:.4f}..{y + h / 2:.4f})"
    return None


def _check_mos(mos: Any) -> list[tuple[str, str]]:
    if mos is None:
        return []
    if not isinstance(mos, dict):
        return [("mos", f"must be an object of scores, got {type(mos).__name__}")]
    problems = []
    for key, value in mos.items():
        if key not in SCORE_RANGES:
            problems.append((f"mos.{key}", f"unknown dimension (known: {', '.join(SCORE_RANGES)})"))
            continue
        if value is None:
            continue
        lo, hi = SCORE_RANGES[key]
        if not _is_number(value):
            problems.append((f"mos.{key}", f"must be a number or null, got {value!r}"))
        elif not lo <= value <= hi:
            problems.append((f"mos.{key}", f"{value} is outside the scale [{lo}, {hi}]"))
        elif key == "completion" and value != int(value):
            problems.append((f"mos.{key}", f"must be a whole level 1, 2 or 3, got {value}"))
    return problems


def prompt_problem(prompt: Any) -> str | None:
    """Why ``prompt`` cannot be an editing prompt (None if it can): a non-empty string of bounded length."""
    if not isinstance(prompt, str) or not prompt.strip():
        return "must be a non-empty string"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"is {len(prompt):,} characters long; an editing prompt may have at most {MAX_PROMPT_CHARS:,}"
    return None


def _check_other_mos(other: Any) -> list[tuple[str, str]]:
    """Ratings of dimensions that are not the paper's (a converted benchmark's): finite numbers or null by name."""
    if other is None:
        return []
    if not isinstance(other, dict):
        return [("other_mos", f"must be an object of scores, got {type(other).__name__}")]
    problems = []
    for key, value in other.items():
        if key in SCORE_RANGES:
            problems.append((f"other_mos.{key}", "is one of the paper's dimensions: put it under mos"))
        elif value is not None and not _is_number(value):
            problems.append((f"other_mos.{key}", f"must be a number or null, got {value!r}"))
    return problems


def _check_cot(cot: Any) -> list[tuple[str, str]]:
    if cot is None:
        return []
    if not isinstance(cot, dict):
        return [("cot", f"must be an object of texts, got {type(cot).__name__}")]
    problems = []
    for key, value in cot.items():
        if key not in COT_FIELDS:
            problems.append((f"cot.{key}", f"unknown section (known: {', '.join(COT_FIELDS)})"))
        elif not isinstance(value, str):
            problems.append((f"cot.{key}", f"must be text, got {type(value).__name__}"))
        elif len(value) > MAX_COT_CHARS:
            problems.append((f"cot.{key}", f"is {len(value):,} characters long; at most {MAX_COT_CHARS:,}"))
    return problems


def image_problem(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """Why an image cannot be used (None if it can), and its displayed (width, height).

    The checks of :func:`epaiqa.data.images.check_image`, the decoder's own.
    """
    return check_image(path)


def parse_line(raw: str, lineno: int, root: Path) -> tuple[PAISample | None, list[Problem]]:
    """One manifest line to a sample, without opening images."""
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem(MANIFEST, lineno, field, message))

    if len(raw) > MAX_LINE_CHARS:
        bad("json", f"the line is {len(raw):,} characters long; a sample may take at most {MAX_LINE_CHARS:,}")
        return None, problems
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        bad("json", f"not valid JSON ({exc.msg} at column {exc.colno})")
        return None, problems
    if not isinstance(data, dict):
        bad("json", "each line must be a JSON object")
        return None, problems
    for key in REQUIRED:
        if key not in data:
            bad(key, "missing")
    if problems:
        return None, problems
    if not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool) or str(data["id"]) == "":
        bad("id", f"must be a non-empty string, got {data['id']!r}")
    for key in ("source", "edited"):
        if not isinstance(data[key], str):
            bad(key, f"must be a path string, got {data[key]!r}")
            continue
        try:
            resolve_inside(root, data[key])
        except ValueError as exc:
            bad(key, str(exc))
    if (msg := prompt_problem(data["prompt"])) is not None:
        bad("prompt", msg)
    if (msg := check_bbox(data["bbox"])) is not None:
        bad("bbox", msg)
    if data["edit_type"] not in MANIFEST_EDIT_TYPES:
        bad("edit_type", f"unknown type {data['edit_type']!r} (known: {', '.join(MANIFEST_EDIT_TYPES)})")
    if data.get("bbox_source", "given") not in BBOX_SOURCES:
        bad("bbox_source", f"must be one of {', '.join(BBOX_SOURCES)}, got {data['bbox_source']!r}")
    for field, message in (
        _check_mos(data.get("mos")) + _check_other_mos(data.get("other_mos")) + _check_cot(data.get("cot"))
    ):
        bad(field, message)
    if problems:
        return None, problems
    mos = {k: (None if v is None else float(v)) for k, v in (data.get("mos") or {}).items()}
    sample = PAISample(
        id=str(data["id"]),
        source=data["source"],
        edited=data["edited"],
        prompt=data["prompt"],
        bbox=tuple(float(v) for v in data["bbox"]),  # type: ignore[arg-type]
        edit_type=data["edit_type"],
        editor=str(data.get("editor", "unknown")),
        mos=mos,
        cot=data.get("cot"),
        bbox_source=data.get("bbox_source", "given"),
        other_mos={k: (None if v is None else float(v)) for k, v in (data.get("other_mos") or {}).items()},
    )
    return sample, problems


def check_lines(
    lines: Iterable[str], root: Path, check_images: bool = True, memo: ValidatedImages | None = None
) -> tuple[list[PAISample], list[Problem]]:
    """Check manifest lines (numbered from 1, blank lines skipped): the valid samples and every problem.

    With a ``memo``, images it knows unchanged are not decoded again, and those that pass are added to it.
    """
    samples: list[PAISample] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    images: dict[str, tuple[str | None, tuple[int, int] | None]] = {}
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        sample, line_problems = parse_line(raw, lineno, root)
        problems.extend(line_problems)
        if sample is None:
            continue
        if sample.id in seen:
            problems.append(Problem(MANIFEST, lineno, "id", f"{sample.id!r} already used on line {seen[sample.id]}"))
            continue
        seen[sample.id] = lineno
        if check_images:
            sizes = {}
            for key in ("source", "edited"):
                rel = getattr(sample, key)
                if rel not in images:
                    images[rel] = _checked(root, rel, memo)
                msg, size = images[rel]
                if msg is None and size is not None and min(size) < MIN_IMAGE_SIDE:
                    msg, size = (
                        f"is {size[0]}x{size[1]} pixels, under the {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} minimum",
                        None,
                    )
                if msg is not None:
                    problems.append(Problem(MANIFEST, lineno, key, f"{rel}: {msg}"))
                sizes[key] = size
            if any(size is None for size in sizes.values()):
                continue
            width, height = sizes["edited"]  # type: ignore[misc]
            if sample.bbox[2] * width < 1 or sample.bbox[3] * height < 1:
                problems.append(
                    Problem(MANIFEST, lineno, "bbox", f"box is under one pixel on a {width}x{height} image")
                )
                continue
        samples.append(sample)
    return samples, problems


def _checked(root: Path, rel: str, memo: ValidatedImages | None) -> tuple[str | None, tuple[int, int] | None]:
    """:func:`image_problem` of an image of the root, skipped for one the memo knows unchanged."""
    path = resolve_inside(root, rel)
    known = memo.size(rel, path) if memo is not None else None
    if known is not None:
        return None, known
    message, size = image_problem(path)
    if memo is not None and message is None and size is not None:
        memo.passed(rel, path, size)
    return message, size


def check_samples(root: str | Path, samples: Iterable[PAISample]) -> list[Problem]:
    """The problems :func:`validate` would report for a manifest written from ``samples`` (images not opened)."""
    lines = [json.dumps(s.to_json(), ensure_ascii=False) for s in samples]
    _, problems = check_lines(lines, Path(root), check_images=False)
    if not lines:
        problems.append(Problem(MANIFEST, 0, "file", "holds no samples"))
    return problems


def validate(
    root: str | Path, check_images: bool = True, check_splits: bool = True, remember: bool = False
) -> tuple[list[PAISample], list[Problem]]:
    """Check every line (and, optionally, every image) of ``ROOT/manifest.jsonl``, and ``ROOT/splits.json``.

    Images are checked by the decoder's own :func:`~epaiqa.data.images.check_image`, and bboxes
    against the displayed size. With ``check_splits``, ``splits.json``, when present, is checked by
    :func:`~epaiqa.data.splits.check_splits` (problems on line 0; its ids are matched against the manifest
    only when the manifest has no problems, so that one broken line is not reported twice).
    Returns the valid samples and every problem found; a sample with any problem is left out. ``remember``: images
    that decoded before and have not changed since are not decoded again (:mod:`epaiqa.data.validated`; the jobs of
    a sweep validate a root once).
    """
    root = Path(root)
    manifest = root / MANIFEST
    if not root.exists():
        return [], [Problem(str(root), 0, "root", "dataset root not found")]
    if not root.is_dir():
        return [], [Problem(str(root), 0, "root", "dataset root is not a directory")]
    if not manifest.is_file():
        return [], [Problem(MANIFEST, 0, "file", f"not found in {root}")]
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        return [], [Problem(MANIFEST, 0, "file", f"cannot be read ({exc})")]
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8: byte 0x{data[exc.start]:02x} at column {column}; save the manifest as UTF-8"
        return [], [Problem(MANIFEST, lineno, "file", message)]

    memo = ValidatedImages(root) if remember and check_images else None
    samples, problems = check_lines(lines, root, check_images=check_images, memo=memo)
    if memo is not None:
        memo.save()
    if not samples and not problems:
        problems.append(Problem(MANIFEST, 0, "file", "holds no samples"))
    if (
        check_splits and (root / SPLITS).exists()
    ):  # ids are matched only against a clean manifest, so one cause is one problem
        by_id = {s.id: s for s in samples}
        found = splits_problems(root / SPLITS, None if problems else by_id, by_id)
        problems.extend(Problem(SPLITS, 0, field, message) for field, message in found)
    if (root / PREFERENCES).exists():
        problems.extend(_preference_problems(root / PREFERENCES, None if problems else {s.id for s in samples}))
    return samples, problems


def _preference_problems(path: Path, known: set[str] | None) -> list[Problem]:
    """Problems of a preference benchmark's groups file (candidates matched only against a clean manifest)."""
    from epaiqa.data.preferences import check_preferences

    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(PREFERENCES, 0, "file", f"cannot be read ({exc})")]
    _, found = check_preferences(lines, known)
    return [Problem(PREFERENCES, line, field, message) for line, field, message in found]


def load_manifest(
    root: str | Path, check_images: bool = True, check_splits: bool = True, remember: bool = False
) -> list[PAISample]:
    """All samples of a dataset root, or :class:`DataError` listing every problem :func:`validate` finds."""
    samples, problems = validate(root, check_images=check_images, check_splits=check_splits, remember=remember)
    if problems:
        where = Path(root) / MANIFEST if all(p.file == MANIFEST for p in problems) else f"dataset root {root}"
        raise DataError(f"{where} is invalid ({len(problems)} problems):", [str(p) for p in problems])
    return samples


def write_manifest(root: str | Path, samples: Iterable[PAISample]) -> Path:
    """Write ``ROOT/manifest.jsonl`` atomically."""
    path = Path(root) / MANIFEST
    text = "".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in samples)
    atomic_write_text(path, text)
    return path
