"""LightningDataModule of one scoring task on a PAI dataset root (the demo set by default)."""

from __future__ import annotations

from typing import Any

from epaiqa.data.base import BaseDataModule, carve_val, check_val_fraction, data_fingerprint, head
from epaiqa.data.datasets import DEFAULT_VIEW, PAIDataset
from epaiqa.data.schema import TASKS, PAISample
from epaiqa.data.view_cache import ViewCache
from epaiqa.errors import ConfigError


class PAIDataModule(BaseDataModule):
    """Train/val/test loaders of the naturalness, harmony or overall subset.

    ``root`` is a dataset root in the manifest format; when it is None the demo set is generated on
    first use into ``demo.cache_dir``. The subset's train ids are split again, by source image, into
    train and validation (``val_fraction``, seeded); the test ids are the subset's test split.
    ``reference=True`` adds the source image (FR models). The root is validated in full before any
    training: an invalid root stops with one message per problem. With ``view_cache_dir`` set and
    ``view_cache_mb`` > 0 the views are kept decoded and resized on disk for every part and every later job
    (:mod:`epaiqa.data.view_cache`).
    """

    def __init__(
        self,
        root: str | None = None,
        task: str = "harmony",
        view: str | None = None,
        reference: bool = False,
        image_size: int = 224,
        margin: float = 0.3,
        val_fraction: float = 0.1,
        view_cache_dir: str | None = None,
        view_cache_mb: float = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, **kwargs)
        if task not in TASKS:
            raise ConfigError(f"data.task must be one of {', '.join(TASKS)}, got {task!r}")
        check_val_fraction(val_fraction)
        self.task = task
        self.view = view or DEFAULT_VIEW[task]
        self.reference = reference
        self.image_size, self.margin = image_size, margin
        self.val_fraction = val_fraction
        if view_cache_mb < 0:
            raise ConfigError(f"data.view_cache_mb must be ≥ 0 (0 = no view cache), got {view_cache_mb}")
        self.view_cache_dir, self.view_cache_mb = view_cache_dir, view_cache_mb

    def split_ids(self, samples: list[PAISample], subsets: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
        """Train/val/test ids of the task's subset."""
        subset = subsets[self.task]
        train, val = carve_val(subset["train"], {s.id: s for s in samples}, self.val_fraction, self.seed)
        return {
            "train": train,
            "val": val,
            "test": head(subset["test"], self.limit_test),
            "train_eval": head(train, self.limit_train_eval),
        }

    def view_caches(self, samples: list[PAISample]) -> dict[str, ViewCache]:
        """The view cache of the edited (``img``) and source (``ref``) views, per kind that can be had."""
        if not self.view_cache_dir or self.view_cache_mb <= 0:
            return {}
        key = {
            "root": str(self.dataset_root.resolve()),
            "manifest": data_fingerprint(self.dataset_root),
            "view": self.view,
            "image_size": self.image_size,
            "margin": self.margin,
        }
        kinds = ("img", "ref") if self.reference else ("img",)
        ids = [s.id for s in samples]
        caches = {
            k: ViewCache.open(self.view_cache_dir, key | {"kind": k}, ids, self.image_size, self.view_cache_mb)
            for k in kinds
        }
        return {kind: cache for kind, cache in caches.items() if cache is not None}

    def build(self, samples: list[PAISample], subsets: dict[str, dict[str, list[str]]]) -> None:
        """One :class:`PAIDataset` per part."""
        by_id = {s.id: s for s in samples}
        caches = self.view_caches(samples)
        for part, ids in self.split_ids(samples, subsets).items():
            if part == "val" and not ids:
                continue
            self.datasets[part] = PAIDataset(
                self.dataset_root,
                [by_id[i] for i in ids],
                self.task,
                self.view,
                self.image_size,
                reference=self.reference,
                margin=self.margin,
                train=part == "train",
                view_cache=caches,
            )
