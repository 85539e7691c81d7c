"""Image references of a request to checked image files: uploads, base64 strings, paths under ``--root``.

A reference is one of:

- an uploaded file (a multipart part), copied in 1 MiB chunks into the request's temporary folder;
- base64: a ``data:image/...;base64,...`` string or ``{"base64": "..."}``, decoded into that folder;
- a path relative to the server's ``--root`` (a plain string or ``{"path": "..."}``), refused outside the root
  (links and ``..`` included) and refused altogether when the server has no root.

Each file is then checked before it is queued: its header's width × height against ``max_pixels`` (no pixel
decoded yet), then :func:`epaiqa.data.images.check_image` (a full decode: a truncated file is caught here, not in
the batch) and the smallest side the project scores. The request's folder (:class:`Uploads`) goes away when the
request and every job it queued are done.
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from epaiqa.data.images import check_image
from epaiqa.data.manifest import MIN_IMAGE_SIDE, resolve_inside
from epaiqa.serve.errors import RequestError, bad

CHUNK = 1024 * 1024
_SPACE = re.compile(rb"\s+")


class Uploads:
    """One request's temporary folder of image files, removed once the request and its queued jobs are done."""

    def __init__(self, parent: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="request-", dir=parent))
        self.count = 0
        self.holds = 0
        self.closed = False

    def new_path(self) -> Path:
        """A fresh file name in the folder (no extension: images are recognised by their content)."""
        self.count += 1
        return self.dir / f"image-{self.count}"

    def hold(self) -> None:
        """A queued job uses the folder's files."""
        self.holds += 1

    def release(self) -> None:
        """A queued job is done with them."""
        self.holds -= 1
        self._remove_if_done()

    def close(self) -> None:
        """The request is answered (or gave up)."""
        self.closed = True
        self._remove_if_done()

    def _remove_if_done(self) -> None:
        if self.closed and self.holds <= 0:
            shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class Upload:
    """A multipart file part: anything with an async ``read(size)`` (Starlette's ``UploadFile``)."""

    file: Any


@dataclass(frozen=True)
class ImageRef:
    """Where one image of a request comes from: ``kind`` upload, base64 or path, and the field it was given in."""

    kind: str
    value: Any
    field: str


def image_ref(value: Any, field: str) -> ImageRef:
    """The reference a JSON value or form value names (400 naming ``field`` when it names none)."""
    if isinstance(value, Upload):
        return ImageRef("upload", value.file, field)
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"base64"} and isinstance(value["base64"], str):
            return ImageRef("base64", value["base64"], field)
        if keys == {"path"} and isinstance(value["path"], str):
            return ImageRef("path", value["path"], field)
        raise bad(field, 'an image object must be {"base64": "<text>"} or {"path": "<path under --root>"}')
    if isinstance(value, str):
        if value.startswith("data:"):
            head, comma, data = value.partition(",")
            if not comma or not head.endswith(";base64"):
                raise bad(field, "a data URI must be base64: data:image/<type>;base64,<text>")
            return ImageRef("base64", data, field)
        if not value.strip():
            raise bad(field, "is empty: give an uploaded file, base64 or a path under --root")
        return ImageRef("path", value, field)
    raise bad(field, f"must be an image (an uploaded file, base64 or a path under --root), got {type(value).__name__}")


def decode_base64(text: str, field: str) -> bytes:
    """The bytes of a base64 text (whitespace ignored), or 400 naming ``field``."""
    raw = text.encode("ascii", errors="replace")
    if _SPACE.search(raw):
        raw = _SPACE.sub(b"", raw)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise bad(field, "is not valid base64") from None


def inside_root(relpath: str, root: Path | None, field: str) -> Path:
    """``root / relpath`` when it stays inside the root; 403 naming ``field`` otherwise or without a root."""
    if root is None:
        raise bad(field, "local paths are refused: this server was started without --root", 403)
    try:
        path = resolve_inside(root, relpath)
    except ValueError as exc:
        raise bad(field, f"refused: {exc} (paths must stay inside --root)", 403) from None
    if not path.is_file():
        raise bad(field, f"{relpath!r}: no such file under --root", 404)
    return path


async def materialize(ref: ImageRef, uploads: Uploads, root: Path | None) -> Path:
    """The file of a reference: the root's own file for a path, a new file in the request's folder otherwise."""
    if ref.kind == "path":
        return inside_root(ref.value, root, ref.field)
    path = uploads.new_path()
    if ref.kind == "base64":
        path.write_bytes(decode_base64(ref.value, ref.field))
        return path
    with path.open("wb") as out:
        while chunk := await ref.value.read(CHUNK):
            out.write(chunk)
    return path


def header_pixels(path: Path) -> tuple[int, int] | None:
    """The (width, height) the header states, None when none can be read (``check_image`` then says why)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                return img.size
        except Image.DecompressionBombError:
            return (1 << 31, 1 << 31)  # larger than Pillow's own bomb limit: larger than any limit here
        except Exception:  # not an image, an unknown format: the full check below names it
            return None


def check_file(path: Path, field: str, max_pixels: int) -> None:
    """Refuse an image file that is over ``max_pixels`` (413), does not decode in full or is too small (400)."""
    size = header_pixels(path)
    if size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        raise bad(
            field,
            f"is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} (max_pixels)",
            413,
        )
    problem, shown = check_image(path)
    if problem is not None:
        status = 413 if "over the limit" in problem else 400
        raise RequestError(status, f"{problem}", field)
    assert shown is not None
    if min(shown) < MIN_IMAGE_SIDE:
        raise bad(field, f"is {shown[0]}x{shown[1]}; an image needs at least {MIN_IMAGE_SIDE} pixels a side")


def check_files(files: list[tuple[Path, str]], max_pixels: int) -> None:
    """:func:`check_file` of each (path, field), in order: the first problem is answered."""
    for path, field in files:
        check_file(path, field, max_pixels)
