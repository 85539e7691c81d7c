"""Scores with a stated scale: raw, on the 1–5 rating scale through a map fitted on the validation split, and a
reward in [0, 1]; the same input gives the same numbers in two calls and in two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from epaiqa import load_scorer
from epaiqa.cli import main
from epaiqa.data.manifest import load_manifest
from epaiqa.records.calibration import MIN_FIT, fit_calibration, read_calibrations


def test_the_logistic_keeps_the_order_and_stays_on_the_scale() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0.0, 3.0, 60)  # a regression that answers far outside 1..5
    mos = 1 + 4 / (1 + np.exp(-raw)) + rng.normal(0, 0.2, 60)
    cal = fit_calibration(raw, mos, "harmony", 1.0, 5.0, "validation split")
    assert cal.method == "logistic4" and cal.n == 60
    probe = np.linspace(-50, 50, 401)
    rated = np.array([cal.rating(v) for v in probe])
    assert rated.min() >= 1.0 and rated.max() <= 5.0 and np.all(np.diff(rated) >= 0)  # monotonic, bounded
    assert spearmanr([cal.rating(v) for v in raw], raw).statistic == pytest.approx(1.0)  # the order is kept
    assert cal.reward(-1e9) == pytest.approx(0.0, abs=0.05) and cal.reward(1e9) == pytest.approx(1.0, abs=0.05)
    assert cal.rating(6.24) <= 5.0


def test_too_few_validation_samples_fall_back_to_clipping() -> None:
    cal = fit_calibration([1.0, 6.0], [2.0, 4.0], "naturalness", 1.0, 5.0, "validation split")
    assert cal.method == "clip" and MIN_FIT > 2
    assert cal.rating(6.24) == 5.0 and cal.rating(-3) == 1.0 and cal.reward(3.0) == 0.5
    assert "clipped" in cal.describe()["map"]


def test_a_trained_baseline_records_its_scale(baseline_sweep: Path) -> None:
    cal = read_calibrations(baseline_sweep / "naturalness")["naturalness"]
    assert cal.fitted_on == "validation split" and cal.n > 0 and cal.raw_scale == "unbounded regression"
    assert cal.method in ("logistic4", "clip")  # clip only below MIN_FIT validation samples
    assert cal.method == "logistic4" or cal.n < MIN_FIT


def _score_argv(run: Path, demo_root: Path) -> list[str]:
    sample = load_manifest(demo_root)[0]
    return ["score", str(run), "--source", str(demo_root / sample.source), "--edited", str(demo_root / sample.edited)]


def test_score_prints_raw_rating_and_reward_with_the_scale_named(
    baseline_sweep: Path, demo_root: Path, capsys: pytest.CaptureFixture
) -> None:
    run = baseline_sweep / "harmony"
    assert main(_score_argv(run, demo_root)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score_raw"] == out["score"] and 1.0 <= out["score_1_5"] <= 5.0 and 0.0 <= out["reward"] <= 1.0
    assert out["reward"] == pytest.approx((out["score_1_5"] - 1) / 4, abs=1e-6)
    assert out["scale"]["rating"] == [1.0, 5.0] and out["scale"]["raw"] == "unbounded regression"
    assert "validation split" in out["scale"]["map"] or "clipped" in out["scale"]["map"]
    scorer = load_scorer(run)
    pair = dict(zip(("source", "edited"), _score_argv(run, demo_root)[3::2], strict=True))
    assert scorer(**pair) == scorer(**pair) == {**out, "run": str(run)}  # two calls: the same numbers


def test_scores_are_the_same_in_two_processes(baseline_sweep: Path, demo_root: Path) -> None:
    argv = [sys.executable, "-m", "epaiqa.cli", *_score_argv(baseline_sweep / "naturalness", demo_root)]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    runs = [subprocess.run(argv, capture_output=True, text=True, env=env, check=True) for _ in range(2)]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first == second and isinstance(first["score_raw"], float)
