"""The one image decoder of the project: validation, training and scoring all see the same pixels.

:func:`load_rgb` turns any still image file into an 8-bit RGB image *as a viewer displays it*:

* **EXIF orientation** is applied (:func:`PIL.ImageOps.exif_transpose`), so sizes and manifest
  bboxes refer to the displayed image: a JPEG stored 100×60 with orientation 6 loads as 60×100.
* **16-bit and wider greyscale** (modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, ``I``, ``F``) is
  scaled, not clipped: ``I;16*`` maps 0..65535 linearly onto 0..255. ``I`` and ``F`` have no fixed
  range; their values are taken as 8-bit when the image's maximum is at most 255 and as 16-bit
  (0..65535 → 0..255, clipped) otherwise. 16-bit RGB(A) PNGs are opened by Pillow as 8-bit
  ``RGB``/``RGBA`` already (it keeps the high byte: the same scaling up to rounding).
* **Transparency** (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``, and palette, grey or
  RGB images with a transparent colour) is composited onto :data:`ALPHA_BACKGROUND`, white.
* **Animated** files (GIF, WebP, APNG with more than one frame) are refused: a score belongs to one
  picture. A single-frame GIF is fine.
* Images with more than :data:`MAX_PIXELS` pixels (environment variable ``EPAIQA_MAX_PIXELS``
  overrides it) are refused from the header, before any pixel is decoded; Pillow's own
  decompression-bomb check never fires first.

:func:`load_rgb` raises :class:`~epaiqa.errors.DataError` with one line naming the file;
:func:`check_image` (used by validation) runs the same checks and the full decode, without the
colour conversion, and returns the problem as a string.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from epaiqa.errors import ConfigError, DataError

#: Colour that transparent pixels are composited onto (white).
ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
#: Largest image accepted, in pixels (width × height); ``EPAIQA_MAX_PIXELS`` overrides it.
MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "EPAIQA_MAX_PIXELS"

#: Modes holding more than 8 bits of grey, scaled to 8 bits by the rule of the module doc.
WIDE_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
#: Modes with an alpha channel.
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})
#: Every mode :func:`load_rgb` converts.
SUPPORTED_MODES = WIDE_GREY_MODES | ALPHA_MODES | {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"}
#: EXIF orientations that swap width and height.
_SWAPPING = frozenset({5, 6, 7, 8})
_OPEN_LOCK = threading.Lock()


class _ImageProblem(Exception):
    """A reason an image cannot be used, worded without the file name."""


def max_pixels() -> int:
    """The pixel limit: ``EPAIQA_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, got {raw!r}")
    return value


def _not_a_file(path: Path) -> str:
    """Why ``path`` is no file to open: missing, a loop of symbolic links, or something else."""
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop so
        return "is a loop of symbolic links"
    except OSError as exc:
        return "is a loop of symbolic links" if exc.errno == errno.ELOOP else "file not found"
    return "is not a file"


@contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """Open the header of ``path`` and check size, frames and mode; nothing is decoded yet."""
    if not path.is_file():
        raise _ImageProblem(_not_a_file(path))
    limit = max_pixels()
    # Pillow's bomb check would raise (or warn) before we can name the size and our limit; it is
    # replaced by the check below, which reads the same header before any pixel is decoded.
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(path)
        except PermissionError as exc:
            raise _ImageProblem(f"cannot be read ({exc.strerror or exc})") from None
        except UnidentifiedImageError:
            raise _ImageProblem("does not decode as an image (not a recognised image format)") from None
        except OSError as exc:
            raise _ImageProblem(f"does not decode as an image ({exc})") from None
        except Exception as exc:  # Pillow's header parsers raise many types on garbage
            raise _ImageProblem(f"does not decode as an image ({type(exc).__name__}: {exc})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise _ImageProblem(f"has an empty size {width}x{height}")
        if width * height > limit:
            raise _ImageProblem(
                f"is {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} "
                f"(set {MAX_PIXELS_ENV} to raise it)"
            )
        try:
            frames = int(getattr(img, "n_frames", 1))
        except Exception as exc:
            raise _ImageProblem(f"does not decode as an image ({type(exc).__name__}: {exc})") from None
        if frames > 1:
            raise _ImageProblem(f"is animated ({frames} frames); only still images are accepted")
        if img.mode not in SUPPORTED_MODES:
            raise _ImageProblem(f"has the unsupported colour mode {img.mode!r}")
        yield img


def _decode(img: Image.Image) -> None:
    try:
        img.load()
    except Exception as exc:  # truncated data, bad codes: each decoder raises its own type
        raise _ImageProblem(f"does not decode as an image ({type(exc).__name__}: {exc})") from None


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # unreadable EXIF: the image shows as stored
        return 1


def _wide_grey_to_l(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """An 8-bit L image by the scaling rule of the module doc, and the transparent-pixel mask."""
    raw = np.asarray(img)
    values = np.nan_to_num(raw.astype(np.float64), nan=0.0, posinf=65535.0, neginf=0.0)
    if img.mode.startswith("I;16") or (values.size and values.max() > 255):
        values = values * (255.0 / 65535.0)
    grey = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    transparency = img.info.get("transparency")
    mask = raw == transparency if isinstance(transparency, (int, float)) else None
    return grey, mask


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """A loaded image of any supported mode as 8-bit RGB (scaling and compositing of the module doc)."""
    if img.mode in WIDE_GREY_MODES:
        grey, mask = _wide_grey_to_l(img)
        if mask is None or not mask.any():
            return grey.convert("RGB")
        rgba = grey.convert("RGBA")
        rgba.putalpha(Image.fromarray(np.where(mask, 0, 255).astype(np.uint8), "L"))
        return _composite(rgba)
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        return _composite(img.convert("RGBA"))  # premultiplied RGBa is un-premultiplied here
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """``path`` decoded as displayed, as an 8-bit RGB image (rules in the module doc).

    Raises:
        DataError: the file is missing, unreadable, not an image, truncated, animated, over the
            pixel limit or of an unsupported mode; the one-line message names the file.
    """
    path = Path(path)
    try:
        with _open(path) as img:
            _decode(img)
            orientation = _orientation(img)
            try:
                if orientation != 1:
                    img = ImageOps.exif_transpose(img)
                return to_rgb(img)
            except Exception as exc:
                raise _ImageProblem(f"cannot be converted to RGB ({type(exc).__name__}: {exc})") from None
    except _ImageProblem as problem:
        raise DataError(f"{path}: {problem}") from None


def check_image(path: str | Path) -> tuple[str | None, tuple[int, int] | None]:
    """Why ``path`` cannot be loaded by :func:`load_rgb` (None if it can), and its displayed (width, height).

    Opens the header (pixel limit, frame count, colour mode) and decodes the pixels to catch
    truncation; the colour conversion is skipped.
    """
    path = Path(path)
    try:
        with _open(path) as img:
            _decode(img)
            width, height = img.size
            return None, (height, width) if _orientation(img) in _SWAPPING else (width, height)
    except _ImageProblem as problem:
        return str(problem), None
