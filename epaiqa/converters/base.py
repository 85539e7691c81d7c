"""What every converter shares: located records, images placed into the root, boxes, and the atomic finish.

A converter reads the benchmark at ``SRC`` record by record and hands each sample (and, for a preference benchmark,
each group) to a :class:`Builder`. The builder copies (or hard-links) the images into a temporary folder beside
``ROOT`` byte for byte, derives every box (from a mask when the benchmark ships one, else from the source/edited
difference), and :func:`convert` writes ``manifest.jsonl``, ``preferences.jsonl`` and ``dataset.json`` there,
validates them, and renames the folder to ``ROOT``. Any bad input raises :class:`ConversionError` with one line,
``FILE:LINE: field: message``, and leaves no ``ROOT`` behind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from PIL import Image

from epaiqa.data.crops import difference_bbox
from epaiqa.data.images import load_rgb
from epaiqa.data.manifest import MIN_IMAGE_SIDE, prompt_problem, validate, write_manifest
from epaiqa.data.preferences import PreferenceGroup, write_preferences
from epaiqa.data.schema import BBOX_SOURCES, DATASET_INFO, UNKNOWN_EDIT_TYPE, PAISample
from epaiqa.errors import DataError
from epaiqa.io import atomic_write_json, make_temp_dir, sweep_stale_temps, temp_path

#: the box of an edit that changes nothing visible: the whole image
WHOLE_IMAGE: tuple[float, float, float, float] = (0.5, 0.5, 1.0, 1.0)
#: where placed images go inside the root
IMAGES = "images"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


class ConversionError(DataError):
    """Bad benchmark input, in one line: ``FILE:LINE: field: message``."""


@dataclass(frozen=True)
class Loc:
    """Where a record sits: a file (as the user knows it) and a line (0: the file as a whole)."""

    file: str
    line: int = 0

    def fail(self, field: str, message: str) -> NoReturn:
        """Raise :class:`ConversionError` located here."""
        raise ConversionError(f"{self.file}:{self.line}: {field}: {message}")


@dataclass(frozen=True)
class Record:
    """One record of a benchmark file (a JSON object, a TSV row, a label line) and where it is."""

    data: Mapping[str, Any]
    loc: Loc

    def value(self, key: str) -> Any:
        """The field ``key``, which must be present and not null."""
        if self.data.get(key) is None:
            self.loc.fail(key, "missing")
        return self.data[key]

    def text(self, key: str, default: str | None = None) -> str:
        """A non-empty string field (``default`` when it is absent, null or empty and a default is given)."""
        value = self.data.get(key)
        if (value is None or value == "") and default is not None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.loc.fail(key, "missing" if value is None else f"must be non-empty text, got {value!r}")
        return value

    def number(self, key: str) -> float:
        """A finite number (a numeric string counts)."""
        return number(self.value(key), self.loc, key)

    def scored(self, key: str, scale: tuple[float, float], name: str) -> float:
        """A number on ``scale``; anything outside is refused, never rescaled."""
        value = self.number(key)
        if not scale[0] <= value <= scale[1]:
            self.loc.fail(
                key, f"{value:g} is outside {name}'s scale [{scale[0]:g}, {scale[1]:g}] (nothing is rescaled)"
            )
        return value


def number(value: Any, loc: Loc, field: str) -> float:
    """``value`` as a finite float, or a located error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        loc.fail(field, f"must be a number, got {value!r}")
    try:
        result = float(value)
    except ValueError:
        loc.fail(field, f"must be a number, got {value!r}")
    if not math.isfinite(result):
        loc.fail(field, f"must be a finite number, got {value!r}")
    return result


def shown(path: Path, src: Path) -> str:
    """``path`` as the user knows it: relative to SRC when inside, else in full."""
    try:
        return path.relative_to(src if src.is_dir() else src.parent).as_posix()
    except ValueError:
        return str(path)


def read_text(path: Path, src: Path) -> str:
    """A UTF-8 file's text (a byte-order mark is dropped), or a located error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        data = path.read_bytes()
        Loc(shown(path, src), data[: exc.start].count(b"\n") + 1).fail("file", "not UTF-8 text")
    except OSError as exc:
        Loc(shown(path, src)).fail("file", f"cannot be read ({exc.strerror or exc})")


def read_records(path: Path, src: Path) -> list[Record]:
    """The objects of a JSON list or of JSON lines, each with its line.

    JSON lines: a ``.jsonl`` file, or a ``.json`` one that starts with ``{`` (Hugging Face ``Dataset.to_json``).
    """
    name = shown(path, src)
    text = read_text(path, src)
    if path.suffix.lower() == ".jsonl" or text.lstrip().startswith("{"):
        if path.suffix.lower() == ".json" and _one_object(text):
            Loc(name, 1).fail("json", "one JSON object: expected a list of records, or JSON lines (one record a line)")
        out = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                out.append(Record(_object(_loads(raw, Loc(name, lineno)), Loc(name, lineno)), Loc(name, lineno)))
        return out
    return _json_list(text, name)


def _one_object(text: str) -> bool:
    """Whether ``text`` is a single JSON object spread over several lines (not JSON lines)."""
    try:
        return "\n" in text.strip() and isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _loads(raw: str, loc: Loc) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        loc.fail("json", f"not valid JSON ({exc.msg} at column {exc.colno})")


def _object(value: Any, loc: Loc) -> dict[str, Any]:
    if not isinstance(value, dict):
        loc.fail("json", f"each record must be a JSON object, got {type(value).__name__}")
    return value


def _json_list(text: str, name: str) -> list[Record]:
    """A top-level JSON list read item by item, so that each record knows the line it starts on."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip(0)
    if i >= len(text) or text[i] != "[":
        Loc(name, line(i)).fail("json", "expected a JSON list of records (or use .jsonl, one record a line)")
    out: list[Record] = []
    i = skip(i + 1)
    while i < len(text) and text[i] != "]":
        loc = Loc(name, line(i))
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            Loc(name, exc.lineno).fail("json", f"not valid JSON ({exc.msg} at column {exc.colno})")
        out.append(Record(_object(value, loc), loc))
        i = skip(i)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
        elif i >= len(text) or text[i] != "]":
            Loc(name, line(i)).fail("json", "expected ',' or ']' after a record")
    if i >= len(text):
        Loc(name, line(i)).fail("json", "the list is not closed with ']'")
    return out


def record_files(src: Path, patterns: Iterable[str], what: str) -> list[Path]:
    """SRC itself when it is a file, else its top-level files matching ``patterns`` (sorted)."""
    if src.is_file():
        return [src]
    found = sorted({p for pattern in patterns for p in src.glob(pattern) if p.is_file()})
    if not found:
        Loc(str(src)).fail("src", f"no {what} found ({', '.join(patterns)})")
    return found


def safe_id(text: str) -> str:
    """``text`` with runs of characters other than letters, digits, ``.``, ``_`` and ``-`` turned into ``_``."""
    return _ID_UNSAFE.sub("_", text).strip("_.") or "x"


@dataclass(frozen=True)
class Placed:
    """An image in the root: its path there, the file decoded for boxes, and how to name it in messages."""

    rel: str
    path: Path
    shown: str


@dataclass
class Dimension:
    """A rating dimension of a converted benchmark, as ``dataset.json`` records it."""

    scale: list[float] | None
    meaning: str
    maps_to: str | None
    how: str

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "meaning": self.meaning, "maps_to": self.maps_to, "how": self.how}


@dataclass
class Builder:
    """Collects the samples and groups of one conversion and places their images in the new root."""

    src: Path
    root: Path
    link: bool = False
    samples: list[PAISample] = field(default_factory=list)
    groups: list[PreferenceGroup] = field(default_factory=list)
    dimensions: dict[str, Dimension] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    bbox_sources: Counter[str] = field(default_factory=Counter)
    whole_image: int = 0
    _placed: dict[str, Placed] = field(default_factory=dict)
    _ids: dict[str, Loc] = field(default_factory=dict)
    _group_ids: dict[str, Loc] = field(default_factory=dict)
    _decoded: dict[Path, Image.Image] = field(default_factory=dict)

    # -- images -------------------------------------------------------------------------------------------------

    def image(self, value: Any, loc: Loc, field: str) -> Placed:
        """Place an image given as a path inside SRC, a ``data:`` URI, or ``{"bytes": base64, "path": ...}``."""
        if isinstance(value, dict):
            if value.get("bytes"):
                return self._bytes(_b64(value["bytes"], loc, f"{field}.bytes"), loc, field)
            if value.get("path"):
                return self._file(value["path"], loc, field)
            loc.fail(field, "an image object needs 'bytes' (base64) or 'path'")
        if isinstance(value, str) and value.startswith("data:"):
            head, _, payload = value.partition(",")
            if not head.endswith(";base64"):
                loc.fail(field, "a data: URI must be base64-encoded")
            return self._bytes(_b64(payload, loc, field), loc, field)
        if not isinstance(value, str) or not value.strip():
            loc.fail(field, f"must be an image path, got {value!r}")
        return self._file(value, loc, field)

    def inside_src(self, relpath: str, loc: Loc, field: str) -> Path:
        """The real path of a file named relative to SRC (or absolute, inside SRC); refused if it leaves SRC."""
        if "\x00" in relpath:
            loc.fail(field, f"{relpath!r} is no file name (it holds a NUL character)")
        base = Path(os.path.realpath(self.src if self.src.is_dir() else self.src.parent))
        real = Path(os.path.realpath(base / relpath))  # an absolute relpath replaces the base
        if real != base and base not in real.parents:
            loc.fail(field, f"{relpath!r} leaves SRC ({base})")
        if not real.is_file():
            loc.fail(field, f"image not found: {relpath}")
        return real

    def _file(self, relpath: str, loc: Loc, field: str) -> Placed:
        real = self.inside_src(relpath, loc, field)
        key = str(real)
        if key not in self._placed:
            base = Path(os.path.realpath(self.src if self.src.is_dir() else self.src.parent))
            rel = f"{IMAGES}/{real.relative_to(base).as_posix()}"
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self.link:
                try:
                    os.link(real, dest)
                except OSError as exc:
                    loc.fail(field, f"cannot hard-link {relpath} into the root ({exc.strerror}); use --copy")
            else:
                shutil.copyfile(real, dest)
            self._placed[key] = Placed(rel, real, relpath)
        return self._placed[key]

    def _bytes(self, data: bytes, loc: Loc, field: str) -> Placed:
        digest = hashlib.sha256(data).hexdigest()
        key = f"sha256:{digest}"
        if key not in self._placed:
            ext = next((e for magic, e in _MAGIC if data.startswith(magic)), "")
            if not ext and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
                ext = ".webp"
            rel = f"{IMAGES}/embedded/{digest[:20]}{ext or '.img'}"
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            self._placed[key] = Placed(rel, dest, f"{field} (embedded image {digest[:12]})")
        return self._placed[key]

    def _rgb(self, placed: Placed, loc: Loc, field: str) -> Image.Image:
        if placed.path not in self._decoded:
            try:
                img = load_rgb(placed.path)
            except DataError as exc:
                reason = str(exc).removeprefix(f"{placed.path}: ")
                loc.fail(field, f"{placed.shown}: {reason}")
            if min(img.size) < MIN_IMAGE_SIDE:
                loc.fail(
                    field,
                    f"{placed.shown}: is {img.width}x{img.height} pixels, under {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}",
                )
            if len(self._decoded) >= 8:  # the sources of a group are reused; little else is
                self._decoded.pop(next(iter(self._decoded)))
            self._decoded[placed.path] = img
        return self._decoded[placed.path]

    # -- samples, groups, dimensions ----------------------------------------------------------------------------

    def sample(
        self,
        loc: Loc,
        sample_id: str,
        source: Placed,
        edited: Placed,
        prompt: str,
        *,
        editor: str = "unknown",
        mos: Mapping[str, float | None] | None = None,
        other_mos: Mapping[str, float | None] | None = None,
        mask: Placed | None = None,
        fields: tuple[str, str] = ("source", "edited"),
    ) -> str:
        """Add one sample (its box from ``mask`` if given, else from the difference); returns its id."""
        sample_id = safe_id(sample_id)
        if sample_id in self._ids:
            first = self._ids[sample_id]
            loc.fail("id", f"sample id {sample_id!r} already made from {first.file}:{first.line}")
        if (problem := prompt_problem(prompt)) is not None:
            loc.fail("prompt", problem)
        before = self._rgb(source, loc, fields[0])
        after = self._rgb(edited, loc, fields[1])
        box = _mask_box(self._rgb(mask, loc, "mask"), after.size) if mask is not None else None
        kind = "mask" if box is not None else "difference"
        if box is None:
            box = difference_bbox(before, after)
        if box is None:
            box, self.whole_image = WHOLE_IMAGE, self.whole_image + 1
        self._ids[sample_id] = loc
        self.bbox_sources[kind] += 1
        self.samples.append(
            PAISample(
                id=sample_id,
                source=source.rel,
                edited=edited.rel,
                prompt=prompt,
                bbox=box,
                edit_type=UNKNOWN_EDIT_TYPE,
                editor=editor or "unknown",
                mos=dict(mos or {}),
                bbox_source=kind,
                other_mos=dict(other_mos or {}),
            )
        )
        return sample_id

    def group(self, loc: Loc, group: PreferenceGroup) -> None:
        """Add one preference group (its candidates must be samples already added)."""
        if group.id in self._group_ids:
            first = self._group_ids[group.id]
            loc.fail("id", f"group id {group.id!r} already made from {first.file}:{first.line}")
        self._group_ids[group.id] = loc
        self.groups.append(group)

    def dimension(
        self, name: str, scale: tuple[float, float] | None, meaning: str, maps_to: str | None, how: str
    ) -> None:
        """Record what a dimension means (once per name)."""
        self.dimensions.setdefault(name, Dimension(list(scale) if scale else None, meaning, maps_to, how))


def _b64(value: Any, loc: Loc, field: str) -> bytes:
    if not isinstance(value, str):
        loc.fail(field, "embedded image bytes must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        loc.fail(field, "embedded image bytes are not valid base64")


def _mask_box(mask: Image.Image, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The box of a mask's white (edited) pixels as fractions, at least one pixel of the edited image; None if empty."""
    import numpy as np

    on = np.asarray(mask.convert("L")) > 127
    if not on.any():
        return None
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    height, width = on.shape
    left, right, top, bottom = cols[0] / width, (cols[-1] + 1) / width, rows[0] / height, (rows[-1] + 1) / height
    w, h = max(right - left, 1 / size[0]), max(bottom - top, 1 / size[1])
    cx = min(max((left + right) / 2, w / 2), 1 - w / 2)
    cy = min(max((top + bottom) / 2, h / 2), 1 - h / 2)
    return (cx, cy, w, h)


# -- the whole conversion -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Converter:
    """One benchmark format: its name, the source it follows (``format_version``), and its reader."""

    name: str
    version: str
    read: Callable[[Path, Builder], None]


@dataclass(frozen=True)
class Summary:
    """What a conversion made."""

    root: Path
    samples: int
    groups: int
    bbox_sources: dict[str, int]
    whole_image: int
    kind: str

    def line(self, fmt: str) -> str:
        """The one line ``epaiqa import`` prints."""
        boxes = ", ".join(f"{k} {self.bbox_sources.get(k, 0)}" for k in BBOX_SOURCES if self.bbox_sources.get(k))
        whole = f" ({self.whole_image} whole-image: no visible change)" if self.whole_image else ""
        samples, groups = _count(self.samples, "sample"), _count(self.groups, "preference group")
        return f"imported {fmt} ({self.kind}): {samples}, {groups}; boxes from {boxes}{whole}; wrote {self.root}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def convert(
    fmt: str,
    version: str,
    read: Callable[[Path, Builder], None],
    src: str | Path,
    out: str | Path,
    link: bool = False,
    force: bool = False,
) -> Summary:
    """Convert ``src`` with ``read`` into a new root at ``out``, atomically; ConversionError on bad input."""
    src_path, out_path = Path(os.path.abspath(src)), Path(os.path.abspath(out))
    if not src_path.exists():
        Loc(str(src)).fail("src", "not found")
    real_src, real_out = Path(os.path.realpath(src_path)), Path(os.path.realpath(out_path))
    if out_path.exists() or out_path.is_symlink():
        if not force:
            Loc(str(out)).fail("out", "already exists (add --force to replace it)")
        if real_out == real_src or real_out in real_src.parents:
            Loc(str(out)).fail("out", "holds SRC; replacing it would delete the benchmark")
        if not out_path.is_dir() or out_path.is_symlink():
            Loc(str(out)).fail("out", "is not a folder; refusing to replace it")
    sweep_stale_temps(out_path.parent)
    tmp = make_temp_dir(out_path)
    try:
        builder = Builder(src_path, tmp, link)
        read(src_path, builder)
        if not builder.samples:
            Loc(str(src)).fail("src", "holds no samples")
        kind = "preference" if builder.groups else "pointwise"
        write_manifest(tmp, builder.samples)
        if builder.groups:
            write_preferences(tmp, builder.groups)
        atomic_write_json(tmp / DATASET_INFO, _dataset_info(fmt, version, src_path, builder, kind, link))
        _, problems = validate(tmp, check_images=False)  # every image was decoded and size-checked when placed
        if problems:
            raise ConversionError(f"{out}:0: converted root: {problems[0]} (a converter bug; please report)")
        _replace(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Summary(
        out_path, len(builder.samples), len(builder.groups), dict(builder.bbox_sources), builder.whole_image, kind
    )


def _dataset_info(fmt: str, version: str, src: Path, b: Builder, kind: str, link: bool) -> dict[str, Any]:
    return {
        "format": fmt,
        "format_version": version,
        "converted_from": str(src),
        "kind": kind,
        "samples": len(b.samples),
        "groups": len(b.groups),
        "bbox_source": {k: b.bbox_sources.get(k, 0) for k in BBOX_SOURCES},
        "whole_image_boxes": b.whole_image,
        "edit_type": f"{UNKNOWN_EDIT_TYPE}: the benchmark does not label the paper's edit types",
        "images": "hard links to SRC" if link else "byte-for-byte copies of SRC (embedded bytes written as they are)",
        "dimensions": {name: _dimension_json(name, d, b.samples) for name, d in b.dimensions.items()},
        **b.info,
    }


def _dimension_json(name: str, dim: Dimension, samples: list[PAISample]) -> dict[str, Any]:
    """A dimension's entry; one without a stated scale also gets the range its values span."""
    entry = dim.to_json()
    values = [v for s in samples if (v := s.other_mos.get(name)) is not None]
    if dim.scale is None and values:
        entry["observed"] = [min(values), max(values)]
    return entry


def _replace(tmp: Path, out: Path) -> None:
    """Rename the finished root into place; an old root (``--force``) goes only once the new one is there."""
    if not (out.exists() or out.is_symlink()):
        os.replace(tmp, out)
        return
    old = temp_path(out)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
