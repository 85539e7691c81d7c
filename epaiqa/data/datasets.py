"""Torch datasets of PAI samples: what a scoring model sees for each task (NR or FR)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from epaiqa.data.base import SampleKey, unpack_key
from epaiqa.data.crops import bbox_to_pixels, window_in_region
from epaiqa.data.images import load_rgb
from epaiqa.data.schema import EDIT_TYPES, PAISample
from epaiqa.data.view_cache import ViewCache
from epaiqa.errors import ConfigError

#: What the model sees of an image:
#: whole — the full image, resized (the paper's harmony input);
#: region — the edited region's box, resized (the paper's naturalness input);
#: context — the region's box grown by ``margin`` on each side, resized (boundary included);
#: native — a window of ``image_size`` pixels inside the region at native scale, no resizing.
VIEWS: tuple[str, ...] = ("whole", "region", "context", "native")
DEFAULT_VIEW = {"harmony": "whole", "naturalness": "region", "overall": "whole"}


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class PAIDataset(Dataset):
    """Samples of one task as dict items: ``img`` (edited), ``ref`` (source, FR only), ``mos``, ``id``, ``edit_type``.

    Images are decoded on access by :func:`~epaiqa.data.images.load_rgb` (as displayed; worker-safe: no open
    handles are kept). With ``train=True`` the native window is placed at random inside the region and images
    are flipped at random, the same way for the edited and the source image, drawing from the seed that
    :class:`~epaiqa.data.base.EpochSampler` hands each sample; otherwise everything is deterministic. Items of
    the overall task carry the sample's prompt ``completion`` (1–3) for the Table-3 subset. ``require_mos=False``
    (scoring unrated images) gives a missing MOS as NaN and an unknown edit type index as −1. ``view_cache`` (per
    image kind, ``img``/``ref``: a :class:`~epaiqa.data.view_cache.ViewCache`) serves views decoded before, by
    this job or an earlier one (not the training ``native`` window, which is drawn at random).
    """

    def __init__(
        self,
        root: str | Path,
        samples: Sequence[PAISample],
        task: str,
        view: str,
        image_size: int,
        reference: bool = False,
        margin: float = 0.3,
        train: bool = False,
        require_mos: bool = True,
        view_cache: dict[str, ViewCache] | None = None,
    ) -> None:
        if view not in VIEWS:
            raise ConfigError(f"data.view must be one of {', '.join(VIEWS)}, got {view!r}")
        missing = [s.id for s in samples if s.score(task) is None]
        if missing and require_mos:
            raise ConfigError(f"{len(missing)} samples have no {task} score, e.g. {missing[0]!r}")
        self.root = Path(root)
        self.samples = list(samples)
        self.task, self.view, self.image_size = task, view, image_size
        self.reference, self.margin, self.train = reference, margin, train
        self.view_cache = view_cache or {}

    def __len__(self) -> int:
        return len(self.samples)

    def _box(
        self, sample: PAISample, width: int, height: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        if self.view == "whole":
            return (0, 0, width, height)
        if self.view == "region":
            return bbox_to_pixels(sample.bbox, width, height)
        if self.view == "context":
            return bbox_to_pixels(sample.bbox, width, height, margin=self.margin)
        jitter = tuple(torch.rand(2, generator=generator).tolist()) if self.train else (0.5, 0.5)
        return window_in_region(sample.bbox, width, height, self.image_size, jitter)  # type: ignore[arg-type]

    def _cut(self, image: Image.Image, box: tuple[int, int, int, int]) -> torch.Tensor:
        """The view: ``box`` cut out and resized to ``image_size`` (bicubic), as uint8 CHW."""
        crop = image.crop(box)
        if crop.size != (self.image_size, self.image_size):
            crop = crop.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return pil_to_tensor(crop)

    def _views(self, sample: PAISample, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The uint8 views ``img`` (edited) and ``ref`` (source, FR only): from the view cache, else decoded."""
        paths = {"img": self.root / sample.edited}
        if self.reference:
            paths["ref"] = self.root / sample.source
        caches = {} if self.train and self.view == "native" else self.view_cache  # a random window each time
        cached = {kind: caches[kind].get(sample.id, path) for kind, path in paths.items() if kind in caches}
        if len(cached) == len(paths) and all(view is not None for view in cached.values()):
            return cached  # type: ignore[return-value]
        edited = load_rgb(paths["img"])
        box = self._box(sample, *edited.size, generator)
        views = {"img": self._cut(edited, box)}
        if self.reference:  # the source, cut at the same place (scaled if its size differs)
            source = load_rgb(paths["ref"])
            sx, sy = source.width / edited.width, source.height / edited.height
            sbox = (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))
            views["ref"] = self._cut(source, sbox)
        for kind, view in views.items():
            if kind in caches:
                caches[kind].put(sample.id, paths[kind], view)
        return views

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, generator = unpack_key(key)
        sample = self.samples[index]
        views = self._views(sample, generator)
        item: dict[str, Any] = {
            "img": views["img"].float().div_(255.0),
            "mos": torch.tensor(_or_nan(sample.score(self.task)), dtype=torch.float32),
            "id": sample.id,
            "edit_type": sample.edit_type,
            "edit_type_index": EDIT_TYPES.index(sample.edit_type) if sample.edit_type in EDIT_TYPES else -1,
        }
        if "ref" in views:
            item["ref"] = views["ref"].float().div_(255.0)
        if self.task == "overall":
            item["completion"] = int(sample.score("completion") or 0)
        if self.train and torch.rand((), generator=generator) < 0.5:
            for key in ("img", "ref"):
                if key in item:
                    item[key] = item[key].flip(-1)
        return item
