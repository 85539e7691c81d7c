"""Natural photos that installed packages ship (no network): scikit-image, scikit-learn, matplotlib, pyiqa."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Photo:
    """A source photo and the noun the demo prompts use for its main subject."""

    name: str
    subject: str
    pixels: np.ndarray  # H×W×3 uint8


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(float(np.ptp(array)), 1e-8)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name.startswith("motorcycle"):
            left, right, _ = skimage.data.stereo_motorcycle()
            return left if name.endswith("left") else right
        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


def _package_file(package: str, *parts: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(package)
        base = Path(spec.origin).parent
        with Image.open(base.joinpath(*parts)) as img:
            return np.asarray(img.convert("RGB"))

    return load


_PYIQA_CALIBRA = ("pyiqa", "..", "ResultsCalibra", "ref_dir")
_PYIQA_EFFICIENCY = ("pyiqa", "..", "tests", "test_efficiency_img_dir")

#: (name, subject noun, loader) for every photo the demo set may use.
CATALOGUE: tuple[tuple[str, str, Callable[[], np.ndarray]], ...] = (
    ("astronaut", "astronaut", _skimage("astronaut")),
    ("coffee", "coffee cup", _skimage("coffee")),
    ("chelsea", "cat", _skimage("chelsea")),
    ("rocket", "rocket", _skimage("rocket")),
    ("retina", "retina", _skimage("retina")),
    ("hubble_deep_field", "galaxy", _skimage("hubble_deep_field")),
    ("immunohistochemistry", "tissue", _skimage("immunohistochemistry")),
    ("motorcycle_left", "motorcycle", _skimage("motorcycle_left")),
    ("motorcycle_right", "motorcycle", _skimage("motorcycle_right")),
    ("camera", "cameraman", _skimage("camera")),
    ("moon", "crater", _skimage("moon")),
    ("coins", "coin", _skimage("coins")),
    ("grass", "grass", _skimage("grass")),
    ("gravel", "stone", _skimage("gravel")),
    ("brick", "brick wall", _skimage("brick")),
    ("clock", "clock", _skimage("clock")),
    ("china", "temple", _sklearn("china")),
    ("flower", "flower", _sklearn("flower")),
    ("grace_hopper", "officer", _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")),
    ("present", "gift box", _package_file("matplotlib", "mpl-data", "sample_data", "Minduka_Present_Blue_Pack.png")),
    *(
        (f"pyiqa_{stem}", "main object", _package_file(*_PYIQA_CALIBRA, f"{stem}.bmp"))
        for stem in ("I03", "I04", "I06", "I08", "I19")
    ),
    *(
        (f"pyiqa_{Path(f).stem}", "main object", _package_file(*_PYIQA_EFFICIENCY, f))
        for f in (
            "SPAQ_10241.jpg",
            "frame_4wrwr48cdk6rbcjl.jpg",
            "frame_7gzdcz9sif0ekg31.jpg",
            "frame_9ogwhvvy7gfj6jzh.jpg",
        )
    ),
)

#: Photos whose texture re-texturing edits borrow (by name), with the material word of the prompt.
MATERIALS: dict[str, str] = {"grass": "grass", "gravel": "gravel", "brick": "brick"}


def load_photos(min_side: int = 128) -> list[Photo]:
    """Every catalogue photo that loads here and is at least ``min_side`` pixels on its short side."""
    photos = []
    for name, subject, loader in CATALOGUE:
        try:
            pixels = _rgb(loader())
        except (FileNotFoundError, OSError, ImportError, AttributeError, ValueError):
            continue
        if min(pixels.shape[:2]) >= min_side:
            photos.append(Photo(name, subject, pixels))
    return photos
