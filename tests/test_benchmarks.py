"""The benchmark suite and the GPU script run (CPU smoke sizes) and write well-formed records."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu  # noqa: E402
from benchmarks.__main__ import main as suite  # noqa: E402
from benchmarks.common import Side, alternate, ratio_result  # noqa: E402


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_alternate_runs_the_sides_in_turn_and_ratios_divide_their_times() -> None:
    calls: list[str] = []
    times = alternate(
        {"a": lambda: calls.append("a"), "b": Side(lambda _: calls.append("b") or 2.0, reports=True)},
        repeats=3,
        warmup=1,
    )
    assert calls == ["a", "b"] * 4
    assert len(times["a"]) == len(times["b"]) == 3 and times["b"] == [2.0, 2.0, 2.0]
    row = ratio_result("x", "b / a", {"a": [1.0, 2.0, 4.0], "b": [3.0, 6.0, 6.0]}, "b", "a", check=lambda r: r <= 3)
    assert (row.ratio_min, row.ratio_median, row.met) == (3.0, 3.0, True)
    inverted = ratio_result("x", "a rate / b rate", {"a": [1.0], "b": [4.0]}, "a", "b", invert=True)
    assert inverted.ratio_median == 4.0


def test_gpu_script_smoke_mode_writes_positive_finite_numbers(tmp_path: Path, demo_root: Path) -> None:
    out = tmp_path / "gpu.json"
    argv = ["--smoke", "--root", str(demo_root), "--peak-tflops", "1", "--out", str(out)]
    gpu.main(argv)
    record = json.loads(out.read_text())
    for key in ("device", "peak_tflops", "dtype", "flops_formula", "pyiqa_qalign_s_per_image", "shapes", "goals"):
        assert key in record
    assert record["smoke"] is True and list(record["shapes"]) == ["tiny"]
    tiny = record["shapes"]["tiny"]
    assert positive(tiny["parameters"]) and positive(tiny["build_s"])
    assert [r["batch"] for r in tiny["scoring"]] == [1, 2]
    for row in tiny["scoring"]:
        for key in ("images_per_s", "images_per_s_score_call", "flops_per_pass", "mfu", "speedup_vs_pyiqa_qalign"):
            assert positive(row[key]), (key, row[key])
        assert positive(row["forward_s"]["min"]) and row["forward_s"]["n"] == 1
        assert row["max_difference_to_score"] < 1e-3  # the timed pass is what score() computes
    # FLOPs grow with the batch: the counter sees every row
    assert tiny["scoring"][1]["flops_per_pass"] > tiny["scoring"][0]["flops_per_pass"]
    train = tiny["train"]
    for key in ("tokens", "tokens_per_s", "flops_per_step", "peak_gib", "mfu", "loss"):
        assert positive(train[key]), (key, train[key])
    assert train["batch"] == 2 and positive(train["step_s"]["median"])
    assert set(record["goals"]["tiny"]) >= {"mfu_goal_met", "speedup_goal_met"}


def test_gpu_peak_table_matches_device_names() -> None:
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu.peak_tflops("Some Other Accelerator") is None


@pytest.mark.parametrize("name", ["data"])
def test_suite_quick_run_of_a_cheap_benchmark(name: str, tmp_path: Path, demo_root: Path) -> None:
    out = tmp_path / "suite.json"
    argv = [name, "--quick", "--repeats", "2", "--count", "4", "--threads", "0", "--root", str(demo_root)]
    rows = suite([*argv, "--out", str(out)])  # --threads 0: the test process keeps its thread setting
    record = json.loads(out.read_text())
    assert record["results"] == rows and {r["benchmark"] for r in rows} == {name}
    assert record["machine"]["torch_threads"] >= 1
    for row in rows:
        assert positive(row["ratio_min"]) and positive(row["ratio_median"])
        assert row["goal"] == "≥ 0.95" and isinstance(row["met"], bool)
        for side in row["seconds"].values():
            assert side["n"] == 2 and positive(side["min"]) and side["median"] >= side["min"]


def test_matrix_split_reads_every_job_of_a_sweep(baseline_sweep: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import matrix

    rows = matrix.job_rows(baseline_sweep)
    assert sorted(r["task"] for r in rows) == ["harmony", "naturalness"]
    for row in rows:
        phases = sum(row[p] for p in matrix.PHASES)
        assert row["train"] > 0 and row["test"] > 0 and row["setup"] > 0
        assert phases == pytest.approx(row["total"], abs=0.01)  # the phases cover the job's wall time
    matrix.main([str(baseline_sweep)])
    out = capsys.readouterr().out
    assert out.count("| wadiqam_nr |") == 2 and "**all jobs**" in out


def test_completion_probe_reads_the_region_change_inside_the_box_only(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from benchmarks.probe_completion import region_change

    source = np.zeros((40, 40, 3), np.uint8)
    edited = source.copy()
    edited[10:30, 10:30] = 100  # the box below, changed by 100 on every channel
    edited[0:5, 0:5] = 255  # outside the box: must not count
    Image.fromarray(source).save(tmp_path / "s.png")
    Image.fromarray(edited).save(tmp_path / "e.png")
    sample = SimpleNamespace(source="s.png", edited="e.png", bbox=(0.5, 0.5, 0.5, 0.5))  # centre, size: pixels 10-30
    mean, median, share, colour, contrast = region_change(tmp_path, sample)
    assert (mean, median, share, colour, contrast) == (100.0, 100.0, 1.0, 100.0, 0.0)
