"""Config composition for tests: the real conf/ tree, shrunk to CPU, tiny inputs and tmp outputs."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def make_cfg(root: Path, out: Path, overrides: list[str] | None = None, small: bool = True) -> DictConfig:
    """Compose ``conf/train.yaml`` with overrides, pointed at a dataset root and an output folder."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=csv", *(overrides or [])])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.data.root = str(root)
        if small:
            if "image_size" in cfg.data:  # IQA baselines; the LMM datamodule sizes images by its processor
                cfg.data.image_size = 64
            cfg.data.batch_size = 4
            cfg.trainer.accelerator = "cpu"
            cfg.trainer.enable_progress_bar = False
            cfg.trainer.enable_model_summary = False
    return cfg
