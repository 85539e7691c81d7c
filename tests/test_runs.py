"""Runs you can trust: own folders, exact resume after a kill, last.ckpt, umask, failed sweep jobs."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ENV = {
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "PATH": "/usr/bin:/bin",
    "PYTHONPATH": str(REPO / "tests"),  # helpers.KillAt
}
SMALL = ["logger=csv", "baseline=wadiqam_nr", "data.image_size=64", "data.batch_size=4"]


def _start(cwd: Path, args: list[str], umask: int | None = None) -> subprocess.Popen:
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )


def _records(cwd: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(cwd.glob("outputs/*/runs/*/results.json"))}


def test_simultaneous_runs_never_share_a_folder(demo_root: Path, tmp_path: Path) -> None:
    one = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    common = [f"data.root={demo_root}", *SMALL, *one, "eval_untrained=false", "data.limit_train_eval=4"]
    jobs = [_start(tmp_path, [*common, f"seed={seed}"]) for seed in (1, 1, 2)]
    logs = [job.communicate()[0] for job in jobs]
    assert all(job.returncode == 0 for job in jobs), logs
    records = _records(tmp_path)
    assert len(records) == 3, list(records)
    assert sorted(r["seed"] for r in records.values()) == [1, 1, 2]
    assert len({r["setting"]["key"] for r in records.values()}) == 1  # seeds apart, one setting
    for folder in records:  # each folder's CSV log holds its own run's rows only
        with (folder / "csv" / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert len([r for r in rows if r.get("test/harmony/srcc")]) == 1


def test_kill_mid_epoch_then_resume_equals_the_uninterrupted_run(demo_root: Path, tmp_path: Path) -> None:
    """SIGKILL in epoch 2 of 3, resume from last.ckpt: same metrics as a run never stopped, same folder."""
    args = [f"data.root={demo_root}", *SMALL, "trainer.max_epochs=3", "trainer.limit_train_batches=3", "seed=1"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    whole = _start(tmp_path / "a", args, umask=0o002)
    killed = _start(tmp_path / "b", [*args, "+callbacks.kill._target_=helpers.KillAt", "+callbacks.kill.step=5"])
    killed_log = killed.communicate()[0]
    assert killed.returncode == -9, killed_log[-2000:]
    (run_b,) = (tmp_path / "b").glob("outputs/*/runs/*")
    assert torch.load(run_b / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0
    assert not (run_b / "results.json").exists()

    resumed = _start(tmp_path / "b", [*args, f"ckpt_path={run_b / 'checkpoints' / 'last.ckpt'}"])
    resumed_log = resumed.communicate()[0]
    whole_log = whole.communicate()[0]
    assert resumed.returncode == 0 and whole.returncode == 0, (resumed_log[-2000:], whole_log[-2000:])

    (a,) = _records(tmp_path / "a").values()
    (folder, b) = next(iter(_records(tmp_path / "b").items()))
    assert folder == run_b  # the resumed run wrote into the interrupted run's folder
    for part in ("test", "train", "untrained"):  # untrained metrics travel in the checkpoint
        for key in ("srcc", "plcc", "rmse"):
            assert b[part]["all"][key] == pytest.approx(a[part]["all"][key], abs=1e-6), (part, key)
    assert a["epochs"] == b["epochs"] == 3 and a["setting"]["key"] == b["setting"]["key"]

    (run_a,) = (tmp_path / "a").glob("outputs/*/runs/*")
    last = torch.load(run_a / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 9  # the latest epoch, whether or not it was the best
    assert oct((run_a / "results.json").stat().st_mode & 0o777) == oct(0o664)  # the user's umask 002
    assert oct((run_a / "checkpoints" / "last.ckpt").stat().st_mode & 0o777) == oct(0o664)
    assert not list(run_b.rglob("*.tmp")) and not list(run_a.rglob("*.tmp"))


def test_failed_sweep_job_writes_its_traceback_and_the_sweep_exits_1(demo_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    job = _start(
        tmp_path,
        ["-m", f"data.root={demo_root}", "data.view=context,sideways", *SMALL, "debug=fdr", f"hydra.sweep.dir={sweep}"],
    )
    log = job.communicate()[0]
    assert job.returncode == 1, log[-2000:]
    assert "1 sweep job(s) failed" in log
    (failed,) = sweep.glob("*/failed.json")
    failure = json.loads(failed.read_text())
    assert "data.view must be one of" in failure["error"]
    trace = (failed.parent / failure["traceback"]).read_text()
    assert trace.startswith("Traceback") and "ConfigError" in trace
    assert len(list(sweep.glob("*/results.json"))) == 1

    from epaiqa.cli import main

    assert main(["report", str(sweep)]) == 1  # a failed job shows in the exit status
    assert main(["report", str(sweep), "--allow-failed"]) == 0


def test_long_sweep_folder_names_are_hashed_under_the_file_system_limit() -> None:
    from omegaconf import OmegaConf

    from epaiqa.runs import MAX_DIRNAME_BYTES, register_resolvers

    register_resolvers()
    long = "model.init_from=" + "/very/long/path" * 30 + ",data.harmony_view=context,é"
    other = long[:-1] + "è"
    cfg = OmegaConf.create({"a": long, "b": other, "c": "baseline=dbcnn", "sa": "${short_name:${a}}"})
    cfg.sb, cfg.sc = "${short_name:${b}}", "${short_name:${c}}"
    assert cfg.sc == "baseline=dbcnn"  # short names stay readable and unchanged
    assert len(cfg.sa.encode()) <= MAX_DIRNAME_BYTES < 255
    assert cfg.sa.startswith("model.init_from=/very/long/path") and cfg.sa != cfg.sb  # same start, kept apart
    hydra_conf = (Path(__file__).parents[1] / "conf" / "hydra" / "default.yaml").read_text()
    assert "${short_name:${hydra.job.override_dirname}}" in hydra_conf
