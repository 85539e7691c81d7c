import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TRAINING_EXPERIMENTS, make_cfg
from omegaconf import open_dict

from epaiqa.checkpoint import AtomicCheckpointIO
from epaiqa.data.schema import EDIT_TYPES
from epaiqa.errors import DataError
from epaiqa.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("experiment", TRAINING_EXPERIMENTS)
def test_every_experiment_runs_one_batch(demo_root: Path, tmp_path: Path, experiment: str) -> None:
    cfg = make_cfg(demo_root, tmp_path, [f"experiment={experiment}", "debug=fdr"])
    train(cfg)
    files = sorted(tmp_path.rglob("results.json"))
    stage = cfg.data.get("stage")
    if stage in ("grounding", "explain"):
        tasks = ["grounding"] if stage == "grounding" else ["overall", "completion"]
    else:
        tasks = list(cfg.data.tasks) if "tasks" in cfg.data else [cfg.data.task]
    assert len(files) == len(tasks)
    plain = {
        "grounding": {"n", "iou", "centre_error", "parse_failure_rate", "mean_box_iou", "mean_box_centre_error"},
        "completion": {"n", "accuracy", "parse_failure_rate", "level_sentence_rate"},
    }
    for path in files:
        saved = json.loads(path.read_text())
        assert saved["task"] in tasks and saved["model"].startswith(cfg.model_name)
        assert set(saved["test"]) == plain.get(saved["task"], {"all", *EDIT_TYPES})
        assert saved["n"] > 0
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "predictions.csv").is_file()


def test_results_have_the_documented_format(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(
        demo_root,
        tmp_path,
        ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "baseline=wadiqam_nr", "eval_untrained=true"],
    )
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    fields = {"task", "model", "kind", "seed", "split_seed", "setting", "git_commit", "data_fingerprint", "lineage"}
    assert fields | {"n", "test", "train", "untrained", "subsets", "checkpoint", "epochs"} <= set(results)
    assert results["model"] == "wadiqam_nr" and results["seed"] == 0 and results["kind"] == "trained"
    assert results["split_seed"] == 3 and len(results["data_fingerprint"]) == 16 and results["lineage"] == []
    assert results["n"] == len((tmp_path / "predictions.csv").read_text().splitlines()) - 1
    for part in ("test", "untrained", "train"):
        for col in ("all", *EDIT_TYPES):
            assert set(results[part][col]) == {"srcc", "plcc", "plcc_logistic", "krcc", "rmse", "n"}
    assert results["test"]["all"]["n"] == sum(results["test"][t]["n"] for t in EDIT_TYPES)
    assert not Path(results["checkpoint"]).is_absolute() and (tmp_path / results["checkpoint"]).is_file()
    metrics_csv = (tmp_path / "csv" / "metrics.csv").read_text()
    for name in ("val/harmony/srcc", "test/harmony/srcc", "untrained/harmony/srcc", "train/harmony/srcc"):
        assert name in metrics_csv


def test_resume_from_checkpoint_continues_the_run(demo_root: Path, tmp_path: Path) -> None:
    common = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "baseline=wadiqam_nr"]
    first = make_cfg(demo_root, tmp_path / "a", ["trainer.max_epochs=1", *common])
    train(first)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2 and state["epoch"] == 0

    second = make_cfg(demo_root, tmp_path / "b", ["trainer.max_epochs=2", f"ckpt_path={last}", *common])
    (record,) = train(second).values()
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 4 and resumed["epoch"] == 1
    assert record.epochs == 2 and record.untrained is not None  # the first run's untrained metrics carried over


def test_invalid_root_stops_before_training(demo_copy: Path, tmp_path: Path) -> None:
    lines = (demo_copy / "manifest.jsonl").read_text().splitlines()
    record = json.loads(lines[5])
    record["bbox"] = [0.5, 0.5, 1.2, 0.5]
    lines[5] = json.dumps(record)
    (demo_copy / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    cfg = make_cfg(demo_copy, tmp_path / "run", ["debug=fdr"])
    with pytest.raises(DataError) as err:
        train(cfg)
    assert "manifest.jsonl:6: bbox: values must lie in [0, 1]" in err.value.problems[0]
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "results.json").exists()


def test_run_py_prints_one_message_for_bad_input(tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "run.py",
            f"data.root={tmp_path / 'missing'}",
            "logger=csv",
            f"hydra.run.dir={tmp_path / 'o'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "dataset root not found" in result.stderr

    bad = subprocess.run(
        [sys.executable, "run.py", "baseline=nope", f"hydra.run.dir={tmp_path / 'o'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "Could not find 'baseline/nope'" in bad.stderr


def test_wandb_logger_runs_offline_one_run_per_train_call(demo_root: Path, tmp_path: Path) -> None:
    """Like the jobs of a sweep in one process: each train() call gets (and closes) its own W&B run."""
    limits = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    for job in ("a", "b"):
        cfg = make_cfg(demo_root, tmp_path / job, [*limits, "baseline=wadiqam_nr", "eval_untrained=false"])
        with open_dict(cfg):
            cfg.logger = make_cfg(demo_root, tmp_path / job, ["logger=default"]).logger
        train(cfg)
    runs = [list((tmp_path / job / "wandb").glob("offline-run-*")) for job in ("a", "b")]
    assert [len(r) for r in runs] == [1, 1], "each job needs a W&B run of its own"
    assert runs[0][0].name != runs[1][0].name


def test_killed_checkpoint_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)

    def crash(obj, fh, *args, **kwargs):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
