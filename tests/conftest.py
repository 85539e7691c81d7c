"""Shared fixtures: a small demo set generated once per session, offline environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

from epaiqa.data.demo import generate_demo_set

DEMO_N = 48


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-sample demo set (96 px); treat as read-only, copy it with ``demo_copy`` to modify."""
    return generate_demo_set(tmp_path_factory.mktemp("demo") / "root", n=DEMO_N, seed=3, size=96)


@pytest.fixture
def demo_copy(demo_root: Path, tmp_path: Path) -> Path:
    """A private copy of the small demo set."""
    return Path(shutil.copytree(demo_root, tmp_path / "root"))


@pytest.fixture(scope="session")
def baseline_sweep(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two trained baseline runs (WaDIQaM-NR, two batches): ``harmony/`` and ``naturalness/``."""
    from helpers import make_cfg

    from epaiqa.train import train

    sweep = tmp_path_factory.mktemp("sweep")
    one = ["baseline=wadiqam_nr", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "eval_untrained=false"]
    for task in ("harmony", "naturalness"):
        train(make_cfg(demo_root, sweep / task, [f"experiment=baseline_{task}", *one]))
    return sweep
