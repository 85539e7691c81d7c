"""Nothing lost, nothing exhausted: metric history across resumes, bounded inputs, the run's own checkpoint."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from epaiqa.checkpoint import RunCheckpoint, check_checkpoint_file
from epaiqa.cli import main
from epaiqa.csv_logging import ResumableCSVLogger
from epaiqa.data.manifest import MAX_LINE_CHARS, MAX_PROMPT_CHARS, validate
from epaiqa.data.prepare import prepare
from epaiqa.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "tests")}
SMALL = ["logger=csv", "baseline=wadiqam_nr", "data.image_size=64", "data.batch_size=4", "data.limit_train_eval=4"]


def _run(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "run.py"), *args]
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def finished_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline run of two short epochs (a best and a last checkpoint)."""
    cwd = tmp_path_factory.mktemp("finished")
    args = [f"data.root={demo_root}", *SMALL, "trainer.max_epochs=2", "trainer.limit_train_batches=2", "seed=3"]
    done = _run(cwd, args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (run,) = cwd.glob("outputs/*/runs/*")
    return run


# --- the metric history ------------------------------------------------------------------------------------------


def test_the_csv_log_keeps_every_attempt_and_drops_a_row_cut_by_a_kill(tmp_path: Path) -> None:
    first = ResumableCSVLogger(tmp_path, name="csv", version="")
    first.log_metrics({"train/loss": 1.0, "epoch": 0}, step=0)
    first.save()
    path = tmp_path / "csv" / "metrics.csv"
    with path.open("a") as fh:
        fh.write("2,0.12")  # a kill mid-write: no newline, numbers cut
    second = ResumableCSVLogger(tmp_path, name="csv", version="")
    second.log_metrics({"train/loss": 0.5, "epoch": 1, "val/harmony/srcc": 0.3}, step=1)
    second.save()
    rows = _rows(tmp_path)
    assert [(r["epoch"], r["attempt"], r["train/loss"]) for r in rows] == [("0", "1", "1.0"), ("1", "2", "0.5")]
    assert rows[0]["val/harmony/srcc"] == "" and rows[1]["val/harmony/srcc"] == "0.3"


def test_a_kill_and_a_resume_keep_every_epochs_rows(demo_root: Path, tmp_path: Path) -> None:
    args = [f"data.root={demo_root}", *SMALL, "trainer.max_epochs=3", "trainer.limit_train_batches=3", "seed=1"]
    killed = _run(tmp_path, [*args, "+callbacks.kill._target_=helpers.KillAt", "+callbacks.kill.step=5"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run,) = tmp_path.glob("outputs/*/runs/*")
    resumed = _run(tmp_path, [*args, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = [r for r in _rows(run) if r.get("val/harmony/srcc")]
    assert sorted((r["epoch"], r["attempt"]) for r in rows) == [("0", "1"), ("1", "2"), ("2", "2")]


def test_a_failed_resume_from_a_cut_checkpoint_is_one_line_and_keeps_the_log(finished_run: Path) -> None:
    cut = finished_run / "checkpoints" / "cut.ckpt"
    data = (finished_run / "checkpoints" / "last.ckpt").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    log = (finished_run / "csv" / "metrics.csv").read_bytes()
    failed = _run(finished_run.parent, [f"ckpt_path={cut}"])
    cut.unlink()
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: ckpt_path: {cut} is not a complete checkpoint (File is not a zip file)"
    ]
    assert (finished_run / "csv" / "metrics.csv").read_bytes() == log


def test_a_checkpoint_damaged_inside_fails_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "w.ckpt"
    torch.save({"state_dict": {"w": torch.arange(4096.0)}}, path)
    check_checkpoint_file(path, "test")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"damaged|not a complete checkpoint"):
        check_checkpoint_file(path, "test")


# --- SIGTERM ----------------------------------------------------------------------------------------------------


def test_sigterm_stops_the_run_with_a_resumable_checkpoint(demo_root: Path, tmp_path: Path) -> None:
    args = [f"data.root={demo_root}", *SMALL, "trainer.max_epochs=3", "trainer.limit_train_batches=3", "seed=2"]
    stop = ["+callbacks.kill._target_=helpers.KillAt", "+callbacks.kill.step=4", "+callbacks.kill.signal=SIGTERM"]
    stopped = _run(tmp_path, [*args, *stop])
    (run,) = tmp_path.glob("outputs/*/runs/*")
    last = run / "checkpoints" / "last.ckpt"
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert stopped.stderr.strip().splitlines()[-1] == f"error: stopped by SIGTERM; resume with ckpt_path={last}"
    assert torch.load(last, weights_only=False)["global_step"] == 4  # mid-epoch 1: the step it stopped at
    assert not (run / "results.json").exists()
    resumed = _run(tmp_path, [*args, f"ckpt_path={last}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "results.json").read_text())["epochs"] == 3


# --- the run's own checkpoint ------------------------------------------------------------------------------------


def _state(dirpath: Path, best: Path, score: float) -> dict:
    return {
        "monitor": "val/harmony/srcc",
        "best_model_score": torch.tensor(score),
        "best_model_path": str(best),
        "current_score": torch.tensor(score),
        "dirpath": str(dirpath),
        "best_k_models": {str(best): torch.tensor(score)},
        "kth_best_model_path": str(best),
        "kth_value": torch.tensor(score),
        "last_model_path": "",
    }


def test_a_resume_in_another_folder_keeps_the_runs_best(tmp_path: Path) -> None:
    old, new = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    old.mkdir(parents=True)
    (old / "best-epoch01.ckpt").write_bytes(b"weights")
    callback = RunCheckpoint(dirpath=new, filename="best-epoch{epoch:02d}", monitor="val/harmony/srcc", mode="max")
    with warnings.catch_warnings():  # Lightning's "dirpath has changed" note (once per process) stays
        warnings.simplefilter("ignore")
        callback.load_state_dict(_state(old, old / "best-epoch01.ckpt", 0.33))
    assert callback.best_model_path == str(new / "best-epoch01.ckpt")
    assert float(callback.best_model_score) == pytest.approx(0.33)  # a later epoch must beat it to be tested
    assert (new / "best-epoch01.ckpt").read_bytes() == b"weights"
    assert (old / "best-epoch01.ckpt").is_file()  # the original run is left as it was


def test_a_copied_run_folder_uses_its_own_files(tmp_path: Path) -> None:
    old, new = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    new.mkdir(parents=True)
    (new / "best-epoch00.ckpt").write_bytes(b"copied")
    callback = RunCheckpoint(dirpath=new, filename="best-epoch{epoch:02d}", monitor="val/harmony/srcc", mode="max")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        callback.load_state_dict(_state(old, old / "best-epoch00.ckpt", 0.5))
    assert callback.best_model_path == str(new / "best-epoch00.ckpt")
    assert list(callback.best_k_models) == [str(new / "best-epoch00.ckpt")]


def test_score_on_a_copied_run_reads_the_copys_weights_and_refuses_damage(
    finished_run: Path, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    record = json.loads((finished_run / "results.json").read_text())
    assert record["checkpoint"].startswith("checkpoints/best-")  # relative to the run
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    best = copy / record["checkpoint"]
    best.write_bytes(best.read_bytes()[:1000])
    sample = json.loads((demo_root / "manifest.jsonl").read_text().splitlines()[0])
    pair = ["--source", str(demo_root / sample["source"]), "--edited", str(demo_root / sample["edited"])]
    assert main(["score", str(copy), *pair]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: score: {best} is not a complete checkpoint (File is not a zip file)"]
    assert main(["score", str(finished_run), *pair]) == 0  # the original is intact and scores


# --- bounded inputs ----------------------------------------------------------------------------------------------


def _rewrite_line(root: Path, index: int, **changes: object) -> None:
    lines = (root / "manifest.jsonl").read_text().splitlines()
    lines[index] = json.dumps(json.loads(lines[index]) | changes)
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def test_prompts_and_lines_are_bounded(demo_copy: Path) -> None:
    _rewrite_line(demo_copy, 1, prompt="x" * 100_000)
    _rewrite_line(demo_copy, 2, prompt="y" * (MAX_PROMPT_CHARS + 1))
    long_line = (demo_copy / "manifest.jsonl").read_text().splitlines()[1]
    _, problems = validate(demo_copy, check_images=False)
    assert [str(p) for p in problems] == [
        f"manifest.jsonl:2: json: the line is {len(long_line):,} characters long; a sample may take at most "
        f"{MAX_LINE_CHARS:,}",
        f"manifest.jsonl:3: prompt: is {MAX_PROMPT_CHARS + 1:,} characters long; an editing prompt may have at most "
        f"{MAX_PROMPT_CHARS:,}",
    ]


def test_score_refuses_a_prompt_over_the_bound(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    pair = ["--source", "s.png", "--edited", "e.png", "--prompt", "z" * (MAX_PROMPT_CHARS + 1)]
    assert main(["score", str(finished_run), *pair]) == 2
    assert capsys.readouterr().err.startswith(f"error: --prompt is {MAX_PROMPT_CHARS + 1:,} characters long")


def test_a_tiny_source_image_is_refused_as_an_edited_one_is(demo_copy: Path) -> None:
    first = json.loads((demo_copy / "manifest.jsonl").read_text().splitlines()[0])
    Image.new("RGB", (1, 1)).save(demo_copy / "tiny.png")
    _rewrite_line(demo_copy, 0, source="tiny.png")
    _, problems = validate(demo_copy)
    assert [str(p) for p in problems] == ["manifest.jsonl:1: source: tiny.png: is 1x1 pixels, under the 8x8 minimum"]
    _rewrite_line(demo_copy, 0, source=first["source"], edited="tiny.png")
    _, problems = validate(demo_copy)
    assert [str(p) for p in problems] == ["manifest.jsonl:1: edited: tiny.png: is 1x1 pixels, under the 8x8 minimum"]


def test_a_symlink_loop_is_named_as_a_loop(demo_copy: Path) -> None:
    os.symlink("loop_b.png", demo_copy / "loop_a.png")
    os.symlink("loop_a.png", demo_copy / "loop_b.png")
    _rewrite_line(demo_copy, 0, source="loop_a.png")
    _, problems = validate(demo_copy)
    assert [str(p) for p in problems] == ["manifest.jsonl:1: source: loop_a.png: is a loop of symbolic links"]


def test_a_non_utf8_byte_is_reported_on_its_line(demo_copy: Path) -> None:
    data = (demo_copy / "manifest.jsonl").read_bytes().split(b"\n")
    data[3] = data[3].replace(b'"prompt": "', b'"prompt": "caf\xe9 ', 1)
    (demo_copy / "manifest.jsonl").write_bytes(b"\n".join(data))
    _, problems = validate(demo_copy, check_images=False)
    (problem,) = problems
    assert problem.line == 4 and "0xe9" in problem.message and "UTF-8" in problem.message


# --- prepare keeps the split -------------------------------------------------------------------------------------


def _split_seed(root: Path) -> int:
    return json.loads((root / "splits.json").read_text())["seed"]


def test_prepare_keeps_the_existing_split_unless_asked(demo_copy: Path) -> None:
    prepare(demo_copy, seed=1, check_images=False, resplit=True)
    split = (demo_copy / "splits.json").read_bytes()
    prepare(demo_copy, check_images=False)  # no seed given: the split made with seed 1 stays
    assert (demo_copy / "splits.json").read_bytes() == split and _split_seed(demo_copy) == 1
    with pytest.raises(ConfigError, match=r"seed 1.*--resplit"):
        prepare(demo_copy, seed=0, check_images=False)
    prepare(demo_copy, seed=0, check_images=False, resplit=True)
    assert _split_seed(demo_copy) == 0


def test_prepare_numbers_its_backups_and_keeps_their_mode(demo_copy: Path) -> None:
    for old in demo_copy.glob("*.bak*"):
        old.unlink()
    os.chmod(demo_copy / "manifest.jsonl", 0o600)
    versions = []
    for _ in range(3):
        versions.append((demo_copy / "manifest.jsonl").read_bytes())
        prepare(demo_copy, check_images=False)
    names = ["manifest.jsonl.bak", "manifest.jsonl.bak2", "manifest.jsonl.bak3"]
    assert sorted(p.name for p in demo_copy.glob("manifest.jsonl.bak*")) == names
    assert [(demo_copy / n).read_bytes() for n in names] == versions
    assert all((demo_copy / n).stat().st_mode & 0o777 == 0o600 for n in names)


def test_the_generated_length_is_bounded() -> None:
    from epaiqa.models.lmm_module import MAX_NEW_TOKENS, EPAIQAScoring

    with pytest.raises(ConfigError, match=f"max_new_tokens must lie in \\[1, {MAX_NEW_TOKENS}\\], got 100000"):
        EPAIQAScoring(backbone="tiny", max_new_tokens=100_000)
