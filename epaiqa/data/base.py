"""What both datamodules share (IQA baselines, EPAIQA stages): the root, its validation, splits, loaders.

Training order and augmentation are functions of (seed, epoch, sample) alone: :class:`EpochSampler` draws each
epoch's permutation from ``seed + epoch`` and hands every sample a seed of its own, so a run resumed from its
last checkpoint sees exactly the batches the uninterrupted run saw, with or without worker processes.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from epaiqa.data.demo import DEMO_DEFAULTS, root_or_demo
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import MANIFEST, SPLITS, PAISample
from epaiqa.data.splits import load_splits, make_splits
from epaiqa.errors import ConfigError


class SampleKey(NamedTuple):
    """What :class:`EpochSampler` yields: the sample's index and the seed of its random augmentation."""

    index: int
    seed: int


def unpack_key(key: int | SampleKey | tuple[int, int]) -> tuple[int, torch.Generator | None]:
    """A dataset index and the generator its augmentation draws from (None: the global generator)."""
    if isinstance(key, tuple):
        return int(key[0]), torch.Generator().manual_seed(int(key[1]))
    return int(key), None


class EpochSampler(Sampler[SampleKey]):
    """A shuffling sampler whose order and per-sample seeds depend only on ``seed`` and the epoch.

    Lightning calls :meth:`set_epoch` at the start of every training epoch (as for ``DistributedSampler``).
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration gives."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        return iter(SampleKey(i, s) for i, s in zip(order, seeds, strict=True))


def check_val_fraction(fraction: float) -> None:
    """``data.val_fraction`` must lie in [0, 1)."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"data.val_fraction must lie in [0, 1), got {fraction}")


def carve_val(
    train_ids: list[str], by_id: dict[str, PAISample], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """A subset's train ids split again into (train, val), whole source images at a time (seeded).

    The validation split is where settings are chosen; it never meets the test split, and a source image's
    samples are all on one side.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for sid in train_ids:
        groups[by_id[sid].source].append(sid)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val = round(fraction * len(train_ids))
    val: list[str] = []
    for i in order:
        if len(val) >= n_val:
            break
        val.extend(groups[keys[i]])
    val_set = set(val)
    return [sid for sid in train_ids if sid not in val_set], sorted(val_set)


def split_seed(root: str | Path) -> int | None:
    """The seed ``splits.json`` records for its train/test split (None when it records none)."""
    try:
        return json.loads((Path(root) / SPLITS).read_text(encoding="utf-8")).get("seed")
    except (OSError, ValueError, AttributeError):
        return None


def data_fingerprint(root: str | Path, resplit: int | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the root's manifest and splits (and a re-split's seed): which data a run saw."""
    digest = hashlib.sha256()
    for name in (MANIFEST, SPLITS):
        path = Path(root) / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"")
    if resplit is not None:
        digest.update(f"resplit:{resplit}".encode())
    return digest.hexdigest()[:16]


def resplit(root: str | Path, samples: list[PAISample], seed: int) -> dict[str, dict[str, list[str]]]:
    """The subsets split again with ``seed``, as ``splits.json`` was (its test fraction and grouping)."""
    try:
        recorded = json.loads((Path(root) / SPLITS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    splits = make_splits(
        samples,
        seed=seed,
        test_fraction=float(recorded.get("test_fraction", 0.2)),
        group_by=str(recorded.get("group_by", "source")),
    )
    return {t: {p: list(ids) for p, ids in parts.items()} for t, parts in splits["subsets"].items()}


class BaseDataModule(L.LightningDataModule):
    """Root (or the cached demo set), full validation before training, subsets, and the loaders.

    Subclasses fill :attr:`datasets` (``train``, ``test``; ``val`` and ``train_eval`` optionally) in
    :meth:`build`; ``train_eval`` is the training split without augmentation, scored for the results record's
    training-set metrics (at most ``limit_train_eval`` samples). ``limit_test`` caps the test split (null: all).
    ``split_seed`` null keeps the root's ``splits.json``; an integer splits every subset again with that seed (the
    same test fraction and grouping by source image), for repeated random splits — distinct from ``seed``, which
    drives training (and the validation split carved from the training side).
    ``STAGE`` names the model stage this data is for (checked against the model by :func:`check_stage`).
    """

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        limit_test: int | None = None,
        limit_train_eval: int | None = None,
        seed: int = 0,
        split_seed: int | None = None,
        demo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("limit_test", limit_test), ("limit_train_eval", limit_train_eval)):
            if value is not None and value < 0:
                raise ConfigError(f"data.{name} must be null or ≥ 0, got {value}")
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.limit_test, self.limit_train_eval = limit_test, limit_train_eval
        self.demo = {**DEMO_DEFAULTS, **(demo or {})}
        if split_seed is not None and (isinstance(split_seed, bool) or not isinstance(split_seed, int)):
            raise ConfigError(f"data.split_seed must be null or an integer, got {split_seed!r}")
        self.resplit_seed = split_seed
        self.datasets: dict[str, Dataset] = {}
        self.split_seed: int | None = None

    @property
    def dataset_root(self) -> Path:
        """The root in use (the cached demo set when ``root`` is None)."""
        return root_or_demo(self.root, self.demo)

    @property
    def stage_name(self) -> str | None:
        """The model stage this data feeds (None: a plain scoring model)."""
        return None

    def prepare_data(self) -> None:
        """Generate the demo set if it is the root in use and not cached yet."""
        _ = self.dataset_root

    def load(self) -> tuple[list[PAISample], dict[str, dict[str, list[str]]]]:
        """The validated samples and the checked subsets of the root."""
        root = self.dataset_root
        samples = load_manifest(root, remember=True)  # a sweep's jobs decode the root's images once
        subsets = load_splits(root, samples)
        self.split_seed = split_seed(root)
        if self.resplit_seed is not None:
            subsets, self.split_seed = resplit(root, samples, self.resplit_seed), self.resplit_seed
        return samples, subsets

    def setup(self, stage: str | None = None) -> None:
        """Validate the root and build the datasets (once)."""
        if not self.datasets:
            self.build(*self.load())

    def build(self, samples: list[PAISample], subsets: dict[str, dict[str, list[str]]]) -> None:
        """Fill :attr:`datasets` from the validated samples and subsets."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """The data fingerprint of the root in use (and of the re-split, if any)."""
        return data_fingerprint(self.dataset_root, self.resplit_seed)

    def collate(self) -> Any:
        """The collate function of the loaders (None: PyTorch's default)."""
        return None

    def _loader(self, part: str, train: bool = False) -> DataLoader:
        dataset = self.datasets[part]
        size = len(dataset)  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=EpochSampler(size, self.seed) if train else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=train and size > self.batch_size,
            collate_fn=self.collate(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def train_eval_dataloader(self) -> DataLoader | None:
        """The training split scored like the test split (no augmentation), or None if not built."""
        return self._loader("train_eval") if "train_eval" in self.datasets else None


def check_stage(datamodule: Any, model: Any) -> None:
    """Refuse a model and data of different EPAIQA stages (e.g. grounding data for a scoring model)."""
    data_stage, model_stage = getattr(datamodule, "stage_name", None), getattr(model, "STAGE", None)
    if data_stage != model_stage:
        raise ConfigError(
            f"the data are for stage {data_stage or 'none (IQA scoring)'} but the model is stage "
            f"{model_stage or 'none (IQA scoring)'}: pick matching data and model configs (see conf/experiment/)"
        )


def head(items: list[Any], limit: int | None) -> list[Any]:
    """The first ``limit`` items (all when ``limit`` is None)."""
    return list(items) if limit is None else list(items)[:limit]
