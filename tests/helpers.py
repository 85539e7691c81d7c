"""Config composition for tests: the real conf/ tree, shrunk to CPU, tiny inputs and tmp outputs."""

from __future__ import annotations

import os
import signal as signal_module
from pathlib import Path

from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback
from omegaconf import DictConfig, open_dict

from epaiqa.runs import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
#: experiments that fit a model in a training loop (best_competitor fits a regressor on finished runs instead:
#: tests/test_competitor.py runs it end to end)
TRAINING_EXPERIMENTS = [e for e in EXPERIMENTS if e != "best_competitor"]


def make_cfg(root: Path, out: Path, overrides: list[str] | None = None, small: bool = True) -> DictConfig:
    """Compose ``conf/train.yaml`` with overrides, pointed at a dataset root and an output folder."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=csv", *(overrides or [])])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.data.root = str(root)
        if "view_cache_dir" in cfg.data:  # the views of the session's tests, not the user's cache
            cfg.data.view_cache_dir = os.environ["EPAIQA_TEST_VIEWS"]
        if small:
            if "image_size" in cfg.data:  # IQA baselines; the LMM datamodule sizes images by its processor
                cfg.data.image_size = 64
            cfg.data.batch_size = 4
            if "limit_val" in cfg.data:  # LMM stages: a few validation samples after each epoch
                cfg.data.limit_val = 4
            cfg.trainer.accelerator = "cpu"
            # the same numbers on every CI machine (auto would take bf16 where the CPU has AMX)
            cfg.trainer.precision = "32-true"
            cfg.trainer.enable_progress_bar = False
            cfg.trainer.enable_model_summary = False
    return cfg


class KillAt(Callback):
    """A Lightning callback that signals its own process after training step ``step``: SIGKILL (a crash
    mid-epoch) or another signal by name (``SIGTERM``: a scheduler's stop)."""

    def __init__(self, step: int, signal: str = "SIGKILL") -> None:
        self.step = step
        self.signal = getattr(signal_module, signal)
        self.sent = False

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal)
