"""scripts/chain.sh and stages.sh: stage order, weights handed on, finished stages kept, killed ones resumed.

The Python they call is a stand-in that records its arguments (and writes what a finished stage leaves), so the
script's own logic is tested in a second, not the stages' training.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
for arg in "$@"; do
  case "$arg" in hydra.run.dir=*) dir=${arg#hydra.run.dir=} ;; esac
done
if [ -n "${dir:-}" ]; then
  [ "$(basename "$dir")" = "${FAIL_STAGE:-}" ] && exit 3
  mkdir -p "$dir/checkpoints" && touch "$dir/checkpoints/last.ckpt" "$dir/results.json"
fi
"""


def _script(script: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<script>`` on ``tmp_path/out`` with the stand-in Python."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    environ = {**os.environ, "PYTHON": str(fake), "CALLS": str(tmp_path / "calls.txt"), **env}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), str(tmp_path / "out"), *args],
        cwd=REPO, env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _chain(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _script("chain.sh", tmp_path, *args, **env)


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().splitlines() if path.is_file() else []


def test_chain_runs_the_stages_in_order_with_the_weights_handed_on(tmp_path: Path) -> None:
    done = _chain(tmp_path, "model/backbone=mini")
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    out = tmp_path / "out"
    assert [c.split()[1] for c in calls[:3]] == [f"hydra.run.dir={out}/s{i}" for i in (1, 2, 3)]
    assert "experiment=stage1_grounding" in calls[0] and "model/backbone=mini" in calls[0]
    assert f'model.init_from="{out}/s1/checkpoints/last.ckpt"' in calls[1] and "experiment=stage2_mixed" in calls[1]
    assert f'model.init_from="{out}/s2/checkpoints/last.ckpt"' in calls[2]
    assert "judge" in calls[3] and "--judge-model demo" in calls[3]
    assert "report" in calls[4] and "--html" in calls[4]


def test_chain_keeps_finished_stages_and_resumes_a_killed_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "s1").mkdir(parents=True)
    (out / "s1" / "results.json").write_text("{}")
    (out / "s1" / "checkpoints").mkdir()
    (out / "s1" / "checkpoints" / "last.ckpt").write_text("")
    (out / "s2" / "checkpoints").mkdir(parents=True)
    (out / "s2" / "checkpoints" / "last.ckpt").write_text("")  # killed: a checkpoint, no results
    done = _chain(tmp_path, UPTO="2")
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    assert "== s1: done before, kept" in done.stdout and not any(f"{out}/s1 " in c for c in calls)
    assert len(calls) == 2 and f'ckpt_path="{out}/s2/checkpoints/last.ckpt"' in calls[0]  # then the report
    assert "report" in calls[1] and "stage3" not in " ".join(calls)


def test_chain_stops_at_a_failed_stage_and_refuses_a_bad_upto(tmp_path: Path) -> None:
    failed = _chain(tmp_path, FAIL_STAGE="s2")
    assert failed.returncode != 0 and len(_calls(tmp_path)) == 2  # s1, then s2 failed: no s3, no report
    bad = _chain(tmp_path, UPTO="5")
    assert bad.returncode == 2 and "UPTO must be 2 or 3" in bad.stderr


def test_chain_hands_a_stage_its_own_overrides_and_refuses_an_unknown_stage(tmp_path: Path) -> None:
    done = _chain(tmp_path, "model/backbone=mini", "s2:trainer.max_epochs=4", "s1:seed=3", UPTO="2")
    assert done.returncode == 0, done.stderr
    s1, s2 = _calls(tmp_path)[:2]
    assert "model/backbone=mini" in s1 and "model/backbone=mini" in s2
    assert s1.endswith("seed=3") and "max_epochs" not in s1 and "s1:" not in s1
    assert s2.endswith("trainer.max_epochs=4") and "seed=3" not in s2 and "s2:" not in s2
    (tmp_path / "bad").mkdir()
    bad = _chain(tmp_path / "bad", "s4:seed=1")
    assert bad.returncode == 2 and "'s4:seed=1'" in bad.stderr and not (tmp_path / "bad" / "calls.txt").exists()


def _ablations(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _script("ablations.sh", tmp_path, *args, **env)


def test_ablations_run_once_per_seed_into_their_own_folders_then_one_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _ablations(tmp_path, "model/backbone=mini", SEEDS="0 2")
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    assert len(calls) == 2 * 8 + 1 and "report" in calls[-1] and f"report {out} " in calls[-1]
    for i, seed in enumerate((0, 2)):
        runs = calls[8 * i : 8 * (i + 1)]
        assert all(f"hydra.run.dir={out}/seed{seed}/" in c and f"seed={seed}" in c for c in runs)
        assert f'model.init_from="{out}/seed{seed}/s1/checkpoints/last.ckpt"' in runs[1]
        assert f'model.init_from="{out}/seed{seed}/s2_wo_stage1/checkpoints/last.ckpt"' in runs[6]
    again = _ablations(tmp_path, "model/backbone=mini", SEEDS="0 2")  # everything finished: only the report
    assert again.returncode == 0 and len(_calls(tmp_path)) == len(calls) + 1
    bad = _ablations(tmp_path, SEEDS="0 x")
    assert bad.returncode == 2 and "SEEDS must be whole numbers" in bad.stderr


def test_ablations_hand_each_stage_its_own_overrides(tmp_path: Path) -> None:
    done = _ablations(tmp_path, "model/backbone=mini", "s2:trainer.max_epochs=4", "s3:model.backbone.map_grid=1")
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)[:8]
    assert all("model/backbone=mini" in c for c in calls)
    assert [("max_epochs=4" in c, "map_grid=1" in c) for c in calls] == [(False, False)] + [(True, False)] * 3 + [
        (False, True)
    ] * 4
    assert not any(" s2:" in c or " s3:" in c for c in calls)


def test_ablations_without_seeds_keep_the_one_run_layout(tmp_path: Path) -> None:
    done = _ablations(tmp_path)
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    assert len(calls) == 9 and calls[0].split()[1] == f"hydra.run.dir={tmp_path / 'out'}/s1"
    assert not any("seed=" in c for c in calls)
