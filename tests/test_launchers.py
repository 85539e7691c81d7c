"""Sweeps beyond one process: a two-job sweep through hydra-submitit-launcher's local executor."""

import json
import os
import subprocess
import sys
from pathlib import Path

from epaiqa.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_a_sweep_runs_through_submitit_local(demo_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(REPO / "run.py"),
        "-m",
        "hydra/launcher=submitit_local",
        "experiment=baseline_harmony",
        "baseline=wadiqam_nr",
        "data.limit_test=8,-1",  # the second job fails: its failure is recorded in its own folder
        f"data.root={demo_root}",
        "data.image_size=64",
        "debug=fdr",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (ok,) = sweep.glob("0_*/results.json")
    assert json.loads(ok.read_text())["test"]["all"]["n"] == 8
    (failed,) = sweep.glob("1_*/failed.json")
    assert "data.limit_test must be null or ≥ 0" in json.loads(failed.read_text())["error"]
    assert main(["report", str(sweep), "--out", str(tmp_path / "report")]) == 1  # the failed job is reported
