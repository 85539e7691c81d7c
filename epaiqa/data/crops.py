"""The edited region in pixels: bbox ⟨x, y, z1, z2⟩ → pixel boxes and crops."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

PixelBox = tuple[int, int, int, int]  # left, top, right, bottom (right/bottom exclusive)


def bbox_to_pixels(bbox: Sequence[float], width: int, height: int, margin: float = 0.0) -> PixelBox:
    """Pixel box of a fractional centre/size bbox, grown by ``margin`` × its size on each side, clamped.

    The result always lies inside the image and is at least one pixel wide and high.
    """
    x, y, w, h = (float(v) for v in bbox)
    w, h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    left = round((x - w / 2) * width)
    top = round((y - h / 2) * height)
    right = round((x + w / 2) * width)
    bottom = round((y + h / 2) * height)
    left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
    right, bottom = min(max(right, left + 1), width), min(max(bottom, top + 1), height)
    return left, top, right, bottom


def crop_region(image: Image.Image, bbox: Sequence[float], margin: float = 0.0) -> Image.Image:
    """The edited region of an image (with an optional relative margin of context)."""
    return image.crop(bbox_to_pixels(bbox, image.width, image.height, margin))


def window_in_region(
    bbox: Sequence[float], width: int, height: int, size: int, jitter: tuple[float, float] = (0.5, 0.5)
) -> PixelBox:
    """A ``size``×``size`` window at native scale inside the region (or centred on it if smaller).

    ``jitter`` in [0, 1]² places the window within the slack of the region (0.5, 0.5 = centred);
    the window is shifted to stay inside the image, and shrunk only if the image is smaller.
    """
    size_w, size_h = min(size, width), min(size, height)
    left, top, right, bottom = bbox_to_pixels(bbox, width, height)
    slack_w, slack_h = (right - left) - size_w, (bottom - top) - size_h
    x0 = left + (slack_w * jitter[0] if slack_w > 0 else slack_w / 2)
    y0 = top + (slack_h * jitter[1] if slack_h > 0 else slack_h / 2)
    x0 = round(min(max(x0, 0), width - size_w))
    y0 = round(min(max(y0, 0), height - size_h))
    return x0, y0, x0 + size_w, y0 + size_h


#: a pixel counts as edited when its mean absolute RGB difference exceeds this (0–255)
DIFFERENCE_THRESHOLD = 24


def difference_bbox(
    source: Image.Image, edited: Image.Image, threshold: float = DIFFERENCE_THRESHOLD
) -> tuple[float, float, float, float] | None:
    """The bbox ⟨x, y, z1, z2⟩ of the pixels where the edited image differs from the source, or None if none do.

    The source is resized to the edited image's size first. An edit that changes the whole photo (a style change)
    gives a box close to the whole image.
    """
    import numpy as np

    if source.size != edited.size:
        source = source.resize(edited.size, Image.Resampling.BILINEAR)
    diff = np.abs(np.asarray(edited.convert("RGB"), np.int16) - np.asarray(source.convert("RGB"), np.int16))
    mask = diff.mean(axis=2) > threshold
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    left, right, top, bottom = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    return ((left + right) / 2 / width, (top + bottom) / 2 / height, (right - left) / width, (bottom - top) / height)
