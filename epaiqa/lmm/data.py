"""Datamodule of the EPAIQA LMM stages: PAI samples paired with the task whose instruction they become.

Batches are plain lists (sample, task); the LightningModule turns them into conversations and tokens
with its own processor, so the same datamodule serves every backbone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from epaiqa.data.demo import DEMO_DEFAULTS, root_or_demo
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import PAISample
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError
from epaiqa.lmm.instructions import has_explain_cot

SCORING_TASKS = ("harmony", "naturalness")
STAGES = ("grounding", "scoring", "explain")

log = logging.getLogger(__name__)


class _Pairs(Dataset):
    def __init__(self, pairs: list[tuple[PAISample, str]]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[PAISample, str]:
        return self.pairs[index]


class _Collate:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, items: list[tuple[PAISample, str]]) -> dict[str, Any]:
        return {"root": self.root, "samples": [s for s, _ in items], "tasks": [t for _, t in items]}


class LMMDataModule(L.LightningDataModule):
    """Data of the LMM stages, paired with the task each sample becomes an instruction for.

    Scoring (stage 2): each task's subset, train ids for training, test ids for testing.
    Grounding (stage 1): every sample except the test ids of all subsets for training, those for testing.
    Explain (stage 3): the overall subset; samples without a prompt completion or overall score (and, for
    training with ``require_cot``, without the CoT an answer needs) are left out, with a warning that counts
    them. Test samples without CoT are kept: their reference answer in ``explanations.jsonl`` has the levels only.

    ``tasks=["harmony", "naturalness"]`` mixes both subsets (the paper's unified stage-2 model). ``root``
    None uses the demo set, as :class:`~epaiqa.data.datamodule.PAIDataModule` does.
    """

    def __init__(
        self,
        root: str | None = None,
        tasks: list[str] | None = None,
        stage: str = "scoring",
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        limit_test: int | None = None,
        require_cot: bool = False,
        demo: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ConfigError(f"data.stage must be one of {', '.join(STAGES)}, got {stage!r}")
        self.stage, self.require_cot = stage, require_cot
        fixed = {"grounding": ["grounding"], "explain": ["overall"]}
        self.tasks = fixed.get(stage) or list(tasks or ["harmony"])
        unknown = [t for t in self.tasks if t not in SCORING_TASKS]
        if stage == "scoring" and (unknown or not self.tasks):
            raise ConfigError(f"data.tasks must be a non-empty subset of {', '.join(SCORING_TASKS)}, got {self.tasks}")
        self.root, self.batch_size = root, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.limit_test = limit_test
        self.demo = {**DEMO_DEFAULTS, **(demo or {})}
        self.task = "+".join(self.tasks)
        self.pairs: dict[str, list[tuple[PAISample, str]]] = {}

    @property
    def dataset_root(self) -> Path:
        """The root in use (the cached demo set when ``root`` is None)."""
        return root_or_demo(self.root, self.demo)

    def prepare_data(self) -> None:
        """Generate the demo set if it is the root in use."""
        _ = self.dataset_root

    def setup(self, stage: str | None = None) -> None:
        """Validate the root and pair every subset's train and test ids with their task (once)."""
        if self.pairs:
            return
        samples = load_manifest(self.dataset_root)
        by_id = {s.id: s for s in samples}
        splits = load_splits(self.dataset_root, samples)
        if self.stage == "grounding":
            # §4.1: every sample except the test ids of all three subsets
            test_ids = sorted(set().union(*(set(parts["test"]) for parts in splits.values())))
            held_out = set(test_ids)
            self.pairs["train"] = [(s, "grounding") for s in samples if s.id not in held_out]
            self.pairs["test"] = [(by_id[i], "grounding") for i in test_ids[: self.limit_test]]
            return
        if self.stage == "explain":
            for part in ("train", "test"):
                usable = [(by_id[i], "overall") for i in splits["overall"][part] if self._explainable(by_id[i], part)]
                dropped = len(splits["overall"][part]) - len(usable)
                if dropped:
                    need = "completion / overall score" + (" or CoT" if part == "train" and self.require_cot else "")
                    log.warning(
                        "stage 3 %s: %d of %d overall samples lack a %s", part, dropped, dropped + len(usable), need
                    )
                self.pairs[part] = usable[: self.limit_test] if part == "test" else usable
            return
        for part in ("train", "test"):
            per_task = [[(by_id[i], t) for i in splits[t][part]] for t in self.tasks]
            if part == "test" and self.limit_test is not None:  # keep every task represented
                per_task = [pairs[: max(1, self.limit_test // len(self.tasks))] for pairs in per_task]
            # interleave the tasks, so every batch (and a one-batch debug run) sees all of them
            longest = max(len(p) for p in per_task)
            self.pairs[part] = [p[k] for k in range(longest) for p in per_task if k < len(p)]

    def _explainable(self, sample: PAISample, part: str) -> bool:
        if sample.score("completion") is None or sample.score("overall") is None:
            return False
        return part != "train" or not self.require_cot or has_explain_cot(sample)

    def train_dataloader(self) -> DataLoader:
        collate = _Collate(self.dataset_root)
        return DataLoader(_Pairs(self.pairs["train"]), self.batch_size, shuffle=True, collate_fn=collate)

    def test_dataloader(self) -> DataLoader:
        collate = _Collate(self.dataset_root)
        return DataLoader(_Pairs(self.pairs["test"]), self.eval_batch_size, shuffle=False, collate_fn=collate)
