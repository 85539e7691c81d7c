"""LightningDataModule of one scoring task on a PAI dataset root (the demo set by default)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from epaiqa.data.datasets import DEFAULT_VIEW, PAIDataset
from epaiqa.data.demo import DEMO_DEFAULTS, root_or_demo
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import TASKS, PAISample
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError


class PAIDataModule(L.LightningDataModule):
    """Train/val/test loaders of the naturalness, harmony or overall subset.

    ``root`` is a dataset root in the manifest format; when it is None the demo set is generated on
    first use into ``demo.cache_dir``. The subset's train ids are split again, by source image, into
    train and validation (``val_fraction``, seeded); the test ids are the subset's test split.
    ``reference=True`` adds the source image (FR models). The root is validated in full before any
    training: an invalid root stops with one message per problem.
    """

    def __init__(
        self,
        root: str | None = None,
        task: str = "harmony",
        view: str | None = None,
        reference: bool = False,
        image_size: int = 224,
        margin: float = 0.3,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        demo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"data.task must be one of {', '.join(TASKS)}, got {task!r}")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"data.val_fraction must lie in [0, 1), got {val_fraction}")
        self.root = root
        self.task = task
        self.view = view or DEFAULT_VIEW[task]
        self.reference = reference
        self.image_size, self.margin = image_size, margin
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.val_fraction, self.seed = num_workers, val_fraction, seed
        self.demo = {**DEMO_DEFAULTS, **(demo or {})}
        self.datasets: dict[str, PAIDataset] = {}

    @property
    def dataset_root(self) -> Path:
        """The root in use (the cached demo set when ``root`` is None)."""
        return root_or_demo(self.root, self.demo)

    def prepare_data(self) -> None:
        """Generate the demo set if it is the root in use and not cached yet."""
        _ = self.dataset_root

    def split_ids(self, samples: list[PAISample]) -> dict[str, list[str]]:
        """Train/val/test ids of the task's subset."""
        subsets = load_splits(self.dataset_root, samples)[self.task]
        by_id = {s.id: s for s in samples}
        groups: dict[str, list[str]] = defaultdict(list)
        for sid in subsets["train"]:
            groups[by_id[sid].source].append(sid)
        keys = sorted(groups)
        order = np.random.default_rng(self.seed).permutation(len(keys))
        n_val = round(self.val_fraction * len(subsets["train"]))
        val: list[str] = []
        for i in order:
            if len(val) >= n_val:
                break
            val.extend(groups[keys[i]])
        val_set = set(val)
        train = [sid for sid in subsets["train"] if sid not in val_set]
        return {"train": train, "val": sorted(val_set), "test": subsets["test"]}

    def setup(self, stage: str | None = None) -> None:
        """Validate the root and build the datasets (once)."""
        if self.datasets:
            return
        root = self.dataset_root
        samples = load_manifest(root)
        by_id = {s.id: s for s in samples}
        for part, ids in self.split_ids(samples).items():
            self.datasets[part] = PAIDataset(
                root,
                [by_id[i] for i in ids],
                self.task,
                self.view,
                self.image_size,
                reference=self.reference,
                margin=self.margin,
                train=part == "train",
            )

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[part],
            batch_size=self.batch_size if part == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=part == "train" and len(self.datasets[part]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
