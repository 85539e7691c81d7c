"""``/score`` and ``/rank`` request bodies, JSON or multipart, to checked scoring items.

``POST /score``, JSON: one item ``{"source", "edited", "prompt"?, "bbox"?}``, or ``{"items": [item, ...]}`` (a
bare list of items too); ``"dimensions": [...]`` beside them keeps only those dimensions. Multipart: the fields
``source``, ``edited`` (files, or text as in JSON), ``prompt``, ``bbox`` (``[cx,cy,w,h]`` or ``cx,cy,w,h``) and
``dimensions`` (a JSON list or ``a,b``) for one item; or ``items`` (the JSON list) whose images name uploaded parts
as ``"@part"``.

``POST /rank``, JSON: ``{"source", "prompt"?, "bbox"?, "candidates": [image, ...], "by"?, "dimensions"?}``;
multipart: the same fields, ``candidates`` repeated (one file each).

Every problem is a :class:`~epaiqa.serve.errors.RequestError` naming its field (``items[1].bbox``,
``candidates[2]``); the structure is checked before any image is written, the images last.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from epaiqa.data.manifest import check_bbox
from epaiqa.serve.errors import RequestError, bad
from epaiqa.serve.inputs import ImageRef, Upload, Uploads, check_files, image_ref, materialize
from epaiqa.serve.settings import Settings

ITEM_KEYS = ("source", "edited", "prompt", "bbox")
SCORE_KEYS = ("items", "dimensions")
RANK_KEYS = ("source", "prompt", "bbox", "candidates", "by", "dimensions")
#: what ``by`` may name besides a dimension: the scorer's reward, where it gives one
REWARD = "reward"


@dataclass
class Item:
    """One pair to score: its images' references, prompt, box, and the prefix of its fields in errors."""

    source: ImageRef
    edited: ImageRef
    prompt: str
    bbox: list[float] | None
    prefix: str

    def field(self, name: str) -> str:
        """The full name of one of its fields (``items[2].bbox``, ``candidates[1]``)."""
        if name == "edited" and self.edited.field != f"{self.prefix}edited":
            return self.edited.field
        return f"{self.prefix}{name}"


@dataclass
class Parsed:
    """A checked request: its items with their image files, the dimensions asked for, and ``by`` (``/rank``)."""

    items: list[Item]
    files: list[tuple[Path, Path]]
    dimensions: tuple[str, ...] | None
    by: str | None = None


# --- reading the body -------------------------------------------------------------------------------------------


async def read_body(request: Request, settings: Settings) -> tuple[str, Any]:
    """``("json", value)`` or ``("form", {name: [values]})``; 400/415 naming ``body`` when it is neither."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        parts = 2 * settings.max_candidates + 8
        form = await request.form(max_files=parts, max_fields=parts, max_part_size=settings.max_upload_bytes)
        fields: dict[str, list[Any]] = {}
        for name, value in form.multi_items():
            fields.setdefault(name, []).append(Upload(value) if isinstance(value, UploadFile) else value)
        return "form", fields
    if kind and kind != "application/json" and not kind.endswith("+json"):
        wrong = f"unsupported content type {kind!r}: send application/json or multipart/form-data"
        raise RequestError(415, wrong, "body")
    raw = await request.body()
    if not raw.strip():
        raise bad("body", "is empty: send a JSON object or a multipart form")
    try:
        return "json", json.loads(raw)
    except (ValueError, RecursionError):
        raise bad("body", "is not valid JSON") from None


def single(fields: dict[str, list[Any]], name: str) -> Any:
    """The one value of a form field (None when absent; 400 when given twice)."""
    values = fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad(name, f"is given {len(values)} times; give it once")
    return values[0]


def form_json(value: Any, field: str) -> Any:
    """A form field's JSON text as a value (400 when it is a file or not JSON)."""
    if not isinstance(value, str):
        raise bad(field, "must be text (JSON), not a file")
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        raise bad(field, "is not valid JSON") from None


def form_bbox(value: Any) -> Any:
    """A form's ``bbox``: ``[cx, cy, w, h]`` JSON or ``cx,cy,w,h``; empty is none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise bad("bbox", "must be text, not a file")
    text = value.strip()
    if text.startswith("["):
        return form_json(text, "bbox")
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise bad("bbox", f"must be four numbers cx,cy,w,h in [0, 1], got {text!r}") from None


def form_dimensions(value: Any) -> Any:
    """A form's ``dimensions``: a JSON list or ``a,b``; empty is all."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().startswith("["):
        return form_json(value, "dimensions")
    if not isinstance(value, str):
        raise bad("dimensions", "must be text, not a file")
    return [v.strip() for v in value.split(",") if v.strip()]


# --- checking fields --------------------------------------------------------------------------------------------


def check_prompt(value: Any, field: str, settings: Settings) -> str:
    """The prompt (absent or null: empty); 400 when not text, 413 when over ``max_prompt_chars``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(field, f"must be text, got {type(value).__name__}")
    if len(value) > settings.max_prompt_chars:
        raise bad(
            field,
            f"is {len(value):,} characters long, over the limit of {settings.max_prompt_chars:,} (max_prompt_chars)",
            413,
        )
    return value


def check_box(value: Any, field: str) -> list[float] | None:
    """The box ``[cx, cy, w, h]`` in [0, 1] inside the image, or None (the model finds the region)."""
    if value is None:
        return None
    problem = check_bbox(value)
    if problem is not None:
        raise bad(field, problem)
    return [float(v) for v in value]


def check_dimensions(value: Any, known: tuple[str, ...]) -> tuple[str, ...] | None:
    """The dimensions asked for (None: all the run knows); 400 naming ``dimensions`` for an unknown one."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise bad("dimensions", "must be a non-empty list of dimension names")
    for name in value:
        if name not in known:
            raise bad("dimensions", f"unknown dimension {name!r}: this run knows {', '.join(known) or 'none'}")
    return tuple(dict.fromkeys(value))


def check_count(values: Any, field: str, settings: Settings, what: str) -> list[Any]:
    """A non-empty list of at most ``max_candidates`` entries."""
    if not isinstance(values, list) or not values:
        raise bad(field, f"must be a non-empty list of {what}")
    if len(values) > settings.max_candidates:
        raise bad(field, f"has {len(values)} {what}, over the limit of {settings.max_candidates} (max_candidates)", 413)
    return values


def unknown_keys(obj: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    """400 naming the first key that is not ``allowed`` (a misspelt field is refused, not ignored)."""
    for key in obj:
        if key not in allowed:
            raise bad(f"{prefix}{key}", f"unknown field (known: {', '.join(allowed)})")


def parse_item(obj: Any, prefix: str, settings: Settings, ref: Callable[[Any, str], ImageRef]) -> Item:
    """One ``{"source", "edited", "prompt"?, "bbox"?}`` object; ``ref`` turns an image value into a reference."""
    if not isinstance(obj, dict):
        raise bad(prefix.rstrip(".") or "body", f"must be an object with source and edited, got {type(obj).__name__}")
    unknown_keys(obj, ITEM_KEYS, prefix)
    for key in ("source", "edited"):
        if obj.get(key) is None:
            raise bad(f"{prefix}{key}", "is missing")
    prompt = check_prompt(obj.get("prompt"), f"{prefix}prompt", settings)
    bbox = check_box(obj.get("bbox"), f"{prefix}bbox")
    source, edited = ref(obj["source"], f"{prefix}source"), ref(obj["edited"], f"{prefix}edited")
    return Item(source, edited, prompt, bbox, prefix)


def form_ref(fields: dict[str, list[Any]]) -> Callable[[Any, str], ImageRef]:
    """Image references of a multipart ``items`` list: ``"@part"`` names an uploaded part."""

    def ref(value: Any, field: str) -> ImageRef:
        if isinstance(value, str) and value.startswith("@"):
            part = single(fields, value[1:])
            if not isinstance(part, Upload):
                raise bad(field, f"names the part {value[1:]!r}, which is not an uploaded file of this form")
            return image_ref(part, field)
        return image_ref(value, field)

    return ref


# --- the two requests -------------------------------------------------------------------------------------------


def score_items(kind: str, body: Any, settings: Settings) -> tuple[list[Item], Any]:
    """The items of a ``/score`` body and its ``dimensions`` value (unchecked)."""
    if kind == "form":
        if "items" in body:
            unknown_keys({k: v for k, v in body.items() if not any(isinstance(x, Upload) for x in v)}, SCORE_KEYS, "")
            values = check_count(form_json(single(body, "items"), "items"), "items", settings, "items")
            ref = form_ref(body)
            items = [parse_item(v, f"items[{i}].", settings, ref) for i, v in enumerate(values)]
            return items, form_dimensions(single(body, "dimensions"))
        unknown_keys(body, (*ITEM_KEYS, "dimensions"), "")
        obj = {key: single(body, key) for key in ("source", "edited", "prompt")}
        obj["bbox"] = form_bbox(single(body, "bbox"))
        return [parse_item(obj, "", settings, image_ref)], form_dimensions(single(body, "dimensions"))
    if isinstance(body, list):
        body = {"items": body}
    if not isinstance(body, dict):
        raise bad("body", f"must be a JSON object (one item or items), got {type(body).__name__}")
    if "items" in body:
        unknown_keys(body, SCORE_KEYS, "")
        values = check_count(body["items"], "items", settings, "items")
        return [parse_item(v, f"items[{i}].", settings, image_ref) for i, v in enumerate(values)], body.get(
            "dimensions"
        )
    item = {k: v for k, v in body.items() if k != "dimensions"}
    return [parse_item(item, "", settings, image_ref)], body.get("dimensions")


def rank_items(kind: str, body: Any, settings: Settings) -> tuple[list[Item], Any, Any]:
    """The items of a ``/rank`` body (the source with each candidate), its ``by`` and ``dimensions`` values."""
    if kind == "form":
        unknown_keys(body, RANK_KEYS, "")
        obj: dict[str, Any] = {key: single(body, key) for key in ("source", "prompt", "by")}
        obj["bbox"] = form_bbox(single(body, "bbox"))
        obj["candidates"] = body.get("candidates")
        obj["dimensions"] = form_dimensions(single(body, "dimensions"))
    elif isinstance(body, dict):
        unknown_keys(body, RANK_KEYS, "")
        obj = body
    else:
        raise bad("body", f"must be a JSON object with source and candidates, got {type(body).__name__}")
    if obj.get("source") is None:
        raise bad("source", "is missing")
    if obj.get("candidates") is None:
        raise bad("candidates", "is missing")
    candidates = check_count(obj["candidates"], "candidates", settings, "candidates")
    prompt = check_prompt(obj.get("prompt"), "prompt", settings)
    bbox = check_box(obj.get("bbox"), "bbox")
    source = image_ref(obj["source"], "source")
    items = [Item(source, image_ref(value, f"candidates[{i}]"), prompt, bbox, "") for i, value in enumerate(candidates)]
    return items, obj.get("by"), obj.get("dimensions")


def check_by(value: Any, known: tuple[str, ...], main: str | None) -> str:
    """What ``/rank`` orders by: a known dimension, ``reward``, or (absent) the run's main dimension."""
    if value is None:
        if main is None:
            raise bad("by", "this run scores no dimension (a grounding run): there is nothing to rank by")
        return main
    scored = tuple(d for d in known if d != "completion")
    if not isinstance(value, str) or (value not in scored and value != REWARD):
        raise bad("by", f"must name a scored dimension ({', '.join(scored) or 'none'}) or {REWARD!r}, got {value!r}")
    return value


async def files_of(items: list[Item], uploads: Uploads, settings: Settings) -> list[tuple[Path, Path]]:
    """Each item's (source, edited) files, written and checked (an image given once is stored and checked once)."""
    stored: dict[int, Path] = {}
    checks: list[tuple[Path, str]] = []

    async def file_of(ref: ImageRef) -> Path:
        key = id(ref.value) if ref.kind == "upload" else id(ref)
        if key not in stored:
            stored[key] = await materialize(ref, uploads, settings.root)
            checks.append((stored[key], ref.field))
        return stored[key]

    files = [(await file_of(item.source), await file_of(item.edited)) for item in items]
    await asyncio.to_thread(check_files, checks, settings.max_pixels)
    return files


async def parse_score(request: Request, settings: Settings, uploads: Uploads, known: tuple[str, ...]) -> Parsed:
    """A ``/score`` request, checked, with its image files in ``uploads``."""
    kind, body = await read_body(request, settings)
    items, dimensions = score_items(kind, body, settings)
    wanted = check_dimensions(dimensions, known)
    return Parsed(items, await files_of(items, uploads, settings), wanted)


async def parse_rank(
    request: Request, settings: Settings, uploads: Uploads, known: tuple[str, ...], main: str | None
) -> Parsed:
    """A ``/rank`` request, checked, with its image files in ``uploads``."""
    kind, body = await read_body(request, settings)
    items, by, dimensions = rank_items(kind, body, settings)
    wanted = check_dimensions(dimensions, known)
    chosen = check_by(by, known, main)
    return Parsed(items, await files_of(items, uploads, settings), wanted, chosen)
