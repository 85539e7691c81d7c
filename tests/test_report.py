import json
from pathlib import Path

import pytest

from epaiqa.cli import main
from epaiqa.data.schema import EDIT_TYPES
from epaiqa.records.results import RunRecord, Setting, read_record, write_record
from epaiqa.report.tables import collect, ranks, to_markdown


def table(base: float) -> dict:
    metrics = {
        col: {"srcc": base + i / 100, "plcc": base + i / 100 + 0.01, "n": 10} for i, col in enumerate(EDIT_TYPES)
    }
    metrics["all"] = {"srcc": base, "plcc": base + 0.05, "n": 40}
    return metrics


def write_run(
    folder: Path, model: str, task: str, base: float, seed: int = 0, overrides: tuple[str, ...] = ("a=1",), **extra
) -> None:
    key = "k-" + ",".join(overrides)
    record = RunRecord(
        task=task, model=model, kind="trained", test=table(base), n=40, seed=seed,
        setting=Setting(key=key, overrides=list(overrides)), **extra,
    )  # fmt: skip
    write_record(folder, record)


def test_report_builds_paper_layout_with_best_and_second(tmp_path: Path) -> None:
    write_run(tmp_path / "0", "dbcnn", "harmony", 0.5)
    write_run(tmp_path / "1", "musiq", "harmony", 0.7)
    write_run(tmp_path / "2", "topiq_nr", "harmony", 0.6)
    write_run(tmp_path / "3", "topiq_nr", "harmony", 0.8, seed=1)  # mean with the above: 0.7 → ties musiq
    write_run(tmp_path / "4", "dbcnn", "naturalness", 0.3)
    report = collect([tmp_path])
    assert set(report.tables) == {"harmony", "naturalness"}
    rows = {row.label: row for row in report.tables["harmony"]}
    assert rows["topiq_nr"].mean(("all", "srcc")) == pytest.approx(0.7)
    assert rows["topiq_nr"].std(("all", "srcc")) == pytest.approx(0.1414, abs=1e-4)
    place = ranks(report.tables["harmony"])[("all", "srcc")]
    assert sorted(place[0]) == ["musiq", "topiq_nr"] and place[1] == ["dbcnn"]
    md = to_markdown("harmony", report.tables["harmony"])
    assert md.startswith("**Table 1: global harmony**")
    assert "| topiq_nr (mean ± std of 2 runs, seeds 0, 1) |" in md and "0.7000 ± 0.1414" in md
    dbcnn_row = next(line for line in md.splitlines() if line.startswith("| dbcnn"))
    assert "_0.5000_" in dbcnn_row and "**" not in dbcnn_row
    assert md.count("| Type-1 SRCC |") == 1


def test_two_settings_of_one_model_are_two_rows_never_averaged(tmp_path: Path, capsys) -> None:
    common = ("baseline=stair_iqa", "experiment=baseline_harmony")
    write_run(tmp_path / "0", "stair_iqa", "harmony", 0.2, overrides=(*common, "data.view=whole"))
    write_run(tmp_path / "1", "stair_iqa", "harmony", 0.6, overrides=(*common, "data.view=context"))
    write_run(tmp_path / "2", "stair_iqa", "harmony", 0.4, seed=1, overrides=(*common, "data.view=context"))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| stair_iqa [data.view=whole] | " in out
    assert "| stair_iqa [data.view=context] (mean ± std of 2 runs, seeds 0, 1) | " in out
    rows = {row.label: row for row in collect([tmp_path]).tables["harmony"]}
    assert rows["stair_iqa [data.view=whole]"].mean(("all", "srcc")) == pytest.approx(0.2)
    assert rows["stair_iqa [data.view=context]"].mean(("all", "srcc")) == pytest.approx(0.5)
    csv_head = (tmp_path / "rep" / "harmony.csv").read_text().splitlines()[0]
    assert csv_head.startswith("model,runs,style_change_srcc,style_change_srcc_std")


def test_a_table_of_runs_on_different_views_marks_every_row_with_its_view(tmp_path: Path) -> None:
    root = {"root": "/demo"}
    write_run(tmp_path / "0", "hyperiqa", "harmony", 0.7, overrides=("data.view=whole",), data=root | {"view": "whole"})
    write_run(
        tmp_path / "1", "hyperiqa", "harmony", 0.72, overrides=("data.view=context",), data=root | {"view": "context"}
    )
    write_run(tmp_path / "2", "epaiqa_mini", "harmony", 0.65, overrides=("x=1",), data=root | {"view": "context"})
    write_run(tmp_path / "3", "hyperiqa", "naturalness", 0.5, data=root | {"view": "region"})
    write_run(tmp_path / "4", "epaiqa_mini", "naturalness", 0.3, data=root | {"view": "region"})
    report = collect([tmp_path])
    assert sorted(row.label for row in report.tables["harmony"]) == [
        "epaiqa_mini · context",
        "hyperiqa [data.view=context] · context",
        "hyperiqa [data.view=whole] · whole",
    ]
    # one view in the table: nothing to tell apart, the labels stay as they were
    assert sorted(row.label for row in report.tables["naturalness"]) == ["epaiqa_mini", "hyperiqa"]


def test_report_lists_failures_with_tracebacks_and_exits_1(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "0", "dbcnn", "harmony", 0.5)
    (tmp_path / "1").mkdir()
    failure = {"error": "DataError: broken", "overrides": ["baseline=x"], "traceback": "traceback.txt"}
    (tmp_path / "1" / "failed.json").write_text(json.dumps(failure))
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "results.json").write_text("{not json")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "DataError: broken" in captured.out
    assert f"traceback: {tmp_path / '1' / 'traceback.txt'}" in captured.out
    assert "unreadable" in captured.err and "--allow-failed" in captured.err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep"), "--allow-failed"]) == 0
    assert (tmp_path / "rep" / "harmony.md").is_file()
    assert main(["report", str(tmp_path / "empty")]) == 1


def test_plain_metrics_and_table_3_from_the_completion_3_subset(tmp_path: Path, capsys) -> None:
    for i, (model, acc) in enumerate([("epaiqa_tiny", 0.5), ("epaiqa_tiny", 0.7), ("epaiqa_tiny_wo_cot", 0.4)]):
        metrics = {"n": 10, "accuracy": acc, "parse_failure_rate": None}
        record = RunRecord(task="completion", model=model, kind="trained", test=metrics, n=10, seed=i)
        write_record(tmp_path / str(i), record)
    sub = {"completion3": {"test": table(0.8), "train": None, "untrained": None}}
    write_run(tmp_path / "3", "epaiqa_tiny", "overall", 0.6, subsets=sub)
    report = collect([tmp_path])
    assert not report.unreadable
    rows = {row.label: row for row in report.scalars["completion"]}
    assert rows["epaiqa_tiny"].mean("accuracy") == pytest.approx(0.6)
    assert rows["epaiqa_tiny"].mean("parse_failure_rate") is None
    (table3,) = report.tables["overall"]  # Table 3: completion = 3 only
    (all_samples,) = report.tables["overall_all"]
    assert table3.mean(("all", "srcc")) == pytest.approx(0.8) and all_samples.mean(("all", "srcc")) == pytest.approx(
        0.6
    )
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "**Table 3: overall editing quality (prompt completion 3)**" in out
    assert "| epaiqa_tiny_wo_cot | 0.4000 | 10 | — |" in out
    head = (tmp_path / "rep" / "completion.csv").read_text().splitlines()[0]
    assert head == "model,runs,accuracy,accuracy_std,n,n_std,parse_failure_rate,parse_failure_rate_std"


def test_schema_1_records_are_read_and_bad_kinds_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(
        json.dumps({"task": "harmony", "model": "m", "seed": 0, "metrics": table(0.3)})
    )
    record = read_record(tmp_path)
    assert record.kind == "trained" and record.n == 40 and record.test["all"]["srcc"] == 0.3
    with pytest.raises(ValueError, match="kind must be one of"):
        RunRecord(task="harmony", model="m", kind="guessed", test=table(0.1), n=40)


def test_split_seed_repetitions_are_one_row_with_median(tmp_path: Path, capsys) -> None:
    for i, base in enumerate((0.5, 0.6, 0.9)):
        write_run(tmp_path / str(i), "hyperiqa", "harmony", base, split_seed=i)
    (row,) = collect([tmp_path]).tables["harmony"]
    assert row.median(("all", "srcc")) == pytest.approx(0.6) and row.mean(("all", "srcc")) == pytest.approx(2 / 3)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| hyperiqa (mean ± std of 3 runs, seeds 0; split seeds 0, 1, 2) | 40 | " in out
    assert "0.6667 ± 0.2082 (median 0.6000)" in out and "raw PLCC" in out
    head = (tmp_path / "rep" / "harmony.csv").read_text().splitlines()[0].split(",")
    assert {"all_srcc_median", "all_plcc_logistic", "all_krcc", "all_rmse", "all_n"} <= set(head)


def test_markdown_shows_the_plcc_it_is_asked_for(tmp_path: Path, capsys) -> None:
    metrics = table(0.5)
    metrics["all"]["plcc_logistic"] = 0.777
    write_record(tmp_path / "0", RunRecord(task="harmony", model="m", kind="trained", test=metrics, n=40))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep"), "--plcc", "logistic"]) == 0
    out = capsys.readouterr().out
    assert "PLCC after the 4-parameter logistic fit (VQEG)" in out and "**0.7770**" in out and "0.5500" not in out


def _stage(folder: Path, model: str, task: str, lineage: list[str], base: float, **extra) -> None:
    sub = {"completion3": {"test": table(base + 0.1), "train": None, "untrained": None}} if task == "overall" else {}
    record = RunRecord(
        task=task, model=model, kind="trained", test=table(base), n=40, lineage=lineage, subsets=sub, **extra
    )
    write_record(folder, record)


def test_tables_5_to_7_come_from_the_ablation_runs(tmp_path: Path, capsys) -> None:
    _stage(tmp_path / "s2", "epaiqa_tiny", "harmony", ["grounding", "scoring"], 0.70)
    _stage(tmp_path / "s2wo", "epaiqa_tiny_wo_stage1", "harmony", ["scoring"], 0.66)
    _stage(tmp_path / "s2ref", "epaiqa_tiny_reference", "harmony", ["scoring"], 0.71, data={"reference": True})
    _stage(tmp_path / "s3", "epaiqa_tiny", "overall", ["grounding", "scoring", "explain"], 0.53)
    _stage(tmp_path / "s3wo", "epaiqa_tiny_wo_stage1", "overall", ["scoring", "explain"], 0.51)
    _stage(tmp_path / "s3ref", "epaiqa_tiny_reference", "overall", ["scoring", "explain"], 0.54)
    _stage(tmp_path / "s3cot", "epaiqa_tiny_wo_cot", "overall", ["grounding", "scoring", "explain"], 0.50)
    write_run(tmp_path / "b", "dbcnn", "harmony", 0.4)  # a baseline is in Table 1, not in the ablations
    report = collect([tmp_path])
    labels = {t: [r.label for r in rows] for t, rows in report.ablations.items()}
    assert labels == {
        "table5": ["w CoT", "w CoT, reference", "w CoT, wo stage-1", "w/o CoT"],
        "table6": ["reference", "w stage-1", "wo stage-1"],
        "table7": ["reference", "w stage-1", "wo stage-1"],
    }
    rows = {r.label: r for r in report.ablations["table7"]}
    assert rows["w stage-1"].mean(("all", "srcc")) == pytest.approx(0.63)  # the completion-3 subset, as Table 3
    assert {r.label: r for r in report.ablations["table6"]}["wo stage-1"].mean(("all", "srcc")) == pytest.approx(0.66)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "**Table 6: stage-2 harmony, grounding pre-training ablation**" in out and "**Table 5:" in out
    assert (tmp_path / "rep" / "table7.md").is_file()
