"""Shared fixtures: a small demo set generated once per session, offline environment."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
#: the view cache the tests share, made here unless the caller named one (then it is the caller's to keep)
_OWN_VIEWS = None if "EPAIQA_TEST_VIEWS" in os.environ else tempfile.mkdtemp(prefix="epaiqa-test-views-")
if _OWN_VIEWS is not None:
    os.environ["EPAIQA_TEST_VIEWS"] = _OWN_VIEWS


from epaiqa.data.demo import generate_demo_set  # noqa: E402  (after the environment above)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the view cache this session made (it was left in /tmp after every run)."""
    if _OWN_VIEWS is not None:
        shutil.rmtree(_OWN_VIEWS, ignore_errors=True)


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


#: the fewest steps and tokens a tiny LMM stage trains and tests with
LMM_FAST = [
    "trainer.limit_train_batches=1",
    "model.max_new_tokens=8",
    "data.limit_train_eval=2",
    "eval_untrained=false",
]


@pytest.fixture(scope="session")
def lmm_chain(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The paper's chain on the tiny backbone, one step a stage: run folders ``s1`` → ``s2`` (mixed) → ``s3``."""
    from helpers import make_cfg

    from epaiqa.train import train

    base = tmp_path_factory.mktemp("chain")
    runs = {"s1": base / "s1", "s2": base / "s2", "s3": base / "s3"}
    train(make_cfg(demo_root, runs["s1"], ["experiment=stage1_grounding", "data.limit_test=2", *LMM_FAST]))
    s2 = ["experiment=stage2_mixed", "data.limit_test=4", f"model.init_from={runs['s1']}/checkpoints/last.ckpt"]
    train(make_cfg(demo_root, runs["s2"], [*s2, *LMM_FAST]))
    s3 = ["experiment=stage3_explain", "data.limit_test=4", f"model.init_from={runs['s2']}/checkpoints/last.ckpt"]
    s3.append("data.explain_view=context")  # epaiqa score must show the views the run was trained on (test_score)
    train(make_cfg(demo_root, runs["s3"], [*s3, *LMM_FAST]))
    return runs
