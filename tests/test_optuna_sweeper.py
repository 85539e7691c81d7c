"""The optional Optuna sweeper config (conf/hydra/sweeper/optuna_baseline.yaml): composes, and a 2-trial search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import CONF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from epaiqa.runs import register_resolvers

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra: pip install -e '.[optuna]'")

REPO = Path(__file__).resolve().parents[1]


def test_the_searched_parameters_are_keys_of_a_baseline_run() -> None:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/sweeper=optuna_baseline", "experiment=baseline_harmony"],
            return_hydra_config=True,
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    for key, space in sweeper.params.items():
        assert isinstance(OmegaConf.select(cfg, key), float), f"{key} is not a number of the run's config"
        assert space.startswith("tag(log, interval(")


def test_a_two_trial_search_maximises_the_validation_srcc(demo_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    command = [
        sys.executable,
        str(REPO / "run.py"),
        "-m",
        "hydra/sweeper=optuna_baseline",
        "hydra.sweeper.n_trials=2",
        "experiment=baseline_harmony",
        "baseline=wadiqam_nr",
        f"data.root={demo_root}",
        "data.image_size=64",
        "data.batch_size=4",
        "data.limit_test=12",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "eval_untrained=false",
        "eval_train=false",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [json.loads((sweep / str(n) / "results.json").read_text()) for n in range(2)]
    configs = [yaml.safe_load((sweep / str(n) / "config.yaml").read_text()) for n in range(2)]
    values = [t["data"]["best_val"]["value"] for t in trials]  # the validation split, never the test split
    assert all(t["data"]["best_val"]["metric"] == "val/harmony/srcc" for t in trials)
    assert best["best_value"] == max(values)
    winner = configs[values.index(best["best_value"])]
    assert best["best_params"] == {
        "baseline.lr": winner["baseline"]["lr"],
        "model.weight_decay": winner["model"]["weight_decay"],
    }
    assert configs[0]["baseline"]["lr"] != configs[1]["baseline"]["lr"], "each trial samples its own lr"
    assert all(1e-5 <= c["baseline"]["lr"] <= 3e-3 and 1e-6 <= c["model"]["weight_decay"] <= 1e-2 for c in configs)
