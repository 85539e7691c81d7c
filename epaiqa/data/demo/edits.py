"""Image operations of the demo set: the four edit types and the artefacts raters punish.

All arrays are float32 H×W×3 in [0, 1]. An edit returns new content for the edited region; an
artefact degrades it (naturalness) or its blending into the surround (harmony).
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageEnhance, ImageFilter
from scipy.ndimage import map_coordinates

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_pil(array: np.ndarray) -> Image.Image:
    """Float [0, 1] array → 8-bit RGB image."""
    return Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8))


def to_array(image: Image.Image) -> np.ndarray:
    """RGB image → float [0, 1] array."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def luminance(array: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, H×W."""
    return array @ LUMA


def match_luminance(content: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Shift content so its mean luminance equals the original's (edits must not fake a brightness offset)."""
    return np.clip(content + (luminance(original).mean() - luminance(content).mean()), 0, 1)


def match_channel_means(content: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Shift content so each channel's mean equals the original's."""
    return np.clip(content + (original.mean(axis=(0, 1)) - content.mean(axis=(0, 1))), 0, 1)


@dataclass(frozen=True)
class Edit:
    """What an edit did: the prompt it answers and a phrase for the explanation."""

    prompt: str
    done: str  # e.g. "the cat is rendered in sepia tones"


# ---------------------------------------------------------------- edit types (Type-1..Type-4)

STYLES = ("sepia", "black-and-white", "blueprint", "neon", "sunset")


def style_change(region: np.ndarray, subject: str, rng: np.random.Generator) -> tuple[np.ndarray, Edit]:
    """Type-1: a filter or palette inside the region."""
    style = STYLES[rng.integers(len(STYLES))]
    y = luminance(region)[..., None]
    if style == "sepia":
        styled = np.clip(y * np.array([1.07, 0.74, 0.43]) * 1.25, 0, 1)
    elif style == "black-and-white":
        styled = np.repeat(y, 3, axis=-1)
    else:
        cmap = {"blueprint": "Blues_r", "neon": "cool", "sunset": "plasma"}[style]
        styled = colormaps[cmap](y[..., 0])[..., :3]
    styled = match_luminance(styled.astype(np.float32), region)
    return styled, Edit(f"Turn the {subject} into a {style} style.", f"the {subject} is rendered in a {style} style")


ENHANCEMENTS = ("sharper", "more contrasted", "more vivid")


def object_enhancement(region: np.ndarray, subject: str, rng: np.random.Generator) -> tuple[np.ndarray, Edit]:
    """Type-2: sharpen, raise contrast or saturation."""
    kind = ENHANCEMENTS[rng.integers(len(ENHANCEMENTS))]
    image = to_pil(region)
    if kind == "sharper":
        image = image.filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=2))
    elif kind == "more contrasted":
        image = ImageEnhance.Contrast(image).enhance(1.6)
    else:
        image = ImageEnhance.Color(image).enhance(1.9)
    out = match_luminance(to_array(image), region)
    return out, Edit(f"Make the {subject} {kind}.", f"the {subject} looks {kind}")


def object_operation(
    region: np.ndarray, subject: str, rng: np.random.Generator, donor: np.ndarray, donor_subject: str
) -> tuple[np.ndarray, Edit]:
    """Type-3: replace the region's content with another photo's, or remove it with a smooth fill."""
    h, w = region.shape[:2]
    if rng.random() < 0.5:
        dh, dw = donor.shape[:2]
        side = int(min(dh, dw) * rng.uniform(0.4, 0.9))
        top, left = rng.integers(0, dh - side + 1), rng.integers(0, dw - side + 1)
        patch = to_array(to_pil(donor[top : top + side, left : left + side]).resize((w, h), Image.Resampling.BICUBIC))
        out = match_channel_means(patch, region)
        return out, Edit(
            f"Replace the {subject} with a {donor_subject}.", f"the {subject} is replaced by a {donor_subject}"
        )
    # removal: the surround's colours, smoothly interpolated over the region (an inpainting-like fill)
    border = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    small = to_pil(region).resize((3, 3), Image.Resampling.BOX)
    fill = to_array(small.resize((w, h), Image.Resampling.BICUBIC))
    fill = np.clip(0.5 * fill + 0.5 * border.mean(axis=0), 0, 1).astype(np.float32)
    texture = rng.normal(0, 0.01, size=region.shape).astype(np.float32)
    return np.clip(fill + texture, 0, 1), Edit(
        f"Remove the {subject}.", f"the {subject} is removed and filled with background"
    )


COLOURS = {"red": 0.0, "orange": 0.08, "yellow": 0.15, "green": 0.33, "blue": 0.62, "purple": 0.78}


def semantic_change(
    region: np.ndarray, subject: str, rng: np.random.Generator, texture: np.ndarray | None, material: str | None
) -> tuple[np.ndarray, Edit]:
    """Type-4: recolour the object, or re-texture it with a material photo."""
    h, w = region.shape[:2]
    if texture is not None and material is not None and rng.random() < 0.4:
        tex = to_array(to_pil(texture).resize((w, h), Image.Resampling.BICUBIC))
        detail = luminance(tex)[..., None] - luminance(tex).mean()
        out = np.clip(region.mean(axis=(0, 1)) * 0.5 + region * 0.5 + 1.2 * detail, 0, 1)
        out = match_luminance(out.astype(np.float32), region)
        return out, Edit(
            f"Make the {subject} look like it is made of {material}.", f"the {subject} takes on a {material} texture"
        )
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    hue = COLOURS[colour]
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    y = luminance(region)[..., None]
    out = np.clip(y * np.array([r, g, b], dtype=np.float32) / max(float(np.dot([r, g, b], LUMA)), 1e-3), 0, 1)
    out = match_luminance(out.astype(np.float32), region)
    return out, Edit(f"Change the colour of the {subject} to {colour}.", f"the {subject} is now {colour}")


# ---------------------------------------------------------------- naturalness artefacts (inside the region)

NATURALNESS_ARTEFACTS = ("blur", "noise", "blockiness", "distortion")
ARTEFACT_PHRASES = {
    "blur": "blur that washes out detail",
    "noise": "grainy noise",
    "blockiness": "blocky compression artefacts",
    "distortion": "wavy geometric distortion",
}


def degrade(region: np.ndarray, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Apply one naturalness artefact of the given severity in [0, 1] (0 leaves the region as is)."""
    if severity <= 0.0:
        return region
    if kind == "blur":
        return to_array(to_pil(region).filter(ImageFilter.GaussianBlur(radius=0.4 + 3.2 * severity)))
    if kind == "noise":
        return np.clip(region + rng.normal(0, 0.16 * severity, size=region.shape), 0, 1).astype(np.float32)
    if kind == "blockiness":
        buffer = io.BytesIO()
        to_pil(region).save(buffer, format="JPEG", quality=max(2, round(60 - 58 * severity)))
        return to_array(Image.open(buffer))
    if kind == "distortion":
        h, w = region.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        amp, period = 1.0 + 5.0 * severity, rng.uniform(8, 16)
        phase = rng.uniform(0, 2 * np.pi)
        coords = [yy + amp * np.sin(xx / period + phase), xx + amp * np.sin(yy / period + phase)]
        return np.stack([map_coordinates(region[..., c], coords, order=1, mode="reflect") for c in range(3)], -1)
    raise ValueError(f"unknown naturalness artefact {kind!r}")


# ---------------------------------------------------------------- harmony artefacts (blending)


@dataclass(frozen=True)
class Blend:
    """How the region is pasted back: seam sharpness, colour/illumination offset, halo."""

    feather: float  # feather width in pixels (large = smooth seam)
    offset: np.ndarray  # per-channel offset added inside the region
    halo: float  # strength of a bright/dark line along the boundary


def blend_for(severity: float, box_size: tuple[int, int], rng: np.random.Generator) -> Blend:
    """The blending of a harmony severity in [0, 1]: 0 → seamless, 1 → hard seam, strong offset, halo."""
    short = min(box_size)
    feather = (1.0 - severity) ** 1.5 * 0.25 * short
    direction = rng.normal(size=3)
    direction = direction / np.linalg.norm(direction) * 0.5 + rng.choice([-1.0, 1.0]) * 0.5
    offset = (0.22 * severity * direction).astype(np.float32)
    halo = max(0.0, severity - 0.45) * 0.9 * rng.choice([-1.0, 1.0])
    return Blend(feather=float(feather), offset=offset, halo=float(halo))


def paste(source: np.ndarray, content: np.ndarray, box: tuple[int, int, int, int], blend: Blend) -> np.ndarray:
    """Composite edited content into the source within ``box`` using the blend's seam, offset and halo."""
    left, top, right, bottom = box
    h, w = bottom - top, right - left
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    distance = np.minimum.reduce([xx + 0.5, w - xx - 0.5, yy + 0.5, h - yy - 0.5])  # to the box edge
    alpha = np.clip(distance / max(blend.feather, 0.5), 0, 1)[..., None]
    inner = np.clip(content + blend.offset, 0, 1)
    out = source.copy()
    patch = source[top:bottom, left:right] * (1 - alpha) + inner * alpha
    if blend.halo != 0.0:
        ring = (np.abs(distance - max(blend.feather, 1.0) * 0.5) < 1.0)[..., None]
        patch = np.where(ring, np.clip(patch + blend.halo * 0.5, 0, 1), patch)
    out[top:bottom, left:right] = patch
    return out
