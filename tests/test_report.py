import json
from pathlib import Path

from epaiqa.cli import main
from epaiqa.data.schema import EDIT_TYPES
from epaiqa.eval.report import collect, ranks, to_markdown


def write_run(folder: Path, model: str, task: str, base: float, seed: int = 0) -> None:
    metrics = {
        col: {"srcc": base + i / 100, "plcc": base + i / 100 + 0.01, "n": 10} for i, col in enumerate(EDIT_TYPES)
    }
    metrics["all"] = {"srcc": base, "plcc": base + 0.05, "n": 40}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps({"task": task, "model": model, "seed": seed, "n": 40, "metrics": metrics})
    )


def test_report_builds_paper_layout_with_best_and_second(tmp_path: Path) -> None:
    write_run(tmp_path / "0", "dbcnn", "harmony", 0.5)
    write_run(tmp_path / "1", "musiq", "harmony", 0.7)
    write_run(tmp_path / "2", "topiq_nr", "harmony", 0.6)
    write_run(tmp_path / "3", "topiq_nr", "harmony", 0.8, seed=1)  # mean with the above: 0.7 → ties musiq
    write_run(tmp_path / "4", "dbcnn", "naturalness", 0.3)
    report = collect([tmp_path])
    assert set(report.tables) == {"harmony", "naturalness"}
    table = report.tables["harmony"]
    assert abs(table["topiq_nr"][("all", "srcc")] - 0.7) < 1e-9
    place = ranks(table)[("all", "srcc")]
    assert sorted(place[0]) == ["musiq", "topiq_nr"] and place[1] == ["dbcnn"]
    md = to_markdown("harmony", table, report.runs["harmony"])
    assert md.startswith("**Table 1: global harmony**")
    assert "| topiq_nr (mean of 2) |" in md
    dbcnn_row = next(line for line in md.splitlines() if line.startswith("| dbcnn"))
    assert "_0.5000_" in dbcnn_row and "**" not in dbcnn_row
    assert md.count("| Type-1 SRCC |") == 1


def test_report_command_writes_files_and_lists_failures(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "0", "dbcnn", "harmony", 0.5)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "failed.json").write_text(json.dumps({"error": "DataError: broken", "overrides": ["baseline=x"]}))
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "results.json").write_text("{not json")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "DataError: broken" in captured.out
    assert "unreadable" in captured.err
    assert (tmp_path / "rep" / "harmony.csv").read_text().splitlines()[0].startswith("model,style_change_srcc")
    assert (tmp_path / "rep" / "harmony.md").is_file()
    assert main(["report", str(tmp_path / "empty")]) == 1


def test_report_tables_plain_metrics_of_grounding_and_completion(tmp_path: Path, capsys) -> None:
    for i, (model, acc) in enumerate([("epaiqa_tiny", 0.5), ("epaiqa_tiny", 0.7), ("epaiqa_tiny_wo_cot", 0.4)]):
        folder = tmp_path / str(i)
        folder.mkdir()
        metrics = {"n": 10, "accuracy": acc, "parse_failure_rate": None}
        (folder / "results.json").write_text(json.dumps({"task": "completion", "model": model, "metrics": metrics}))
    write_run(tmp_path / "3", "epaiqa_tiny", "overall", 0.6)
    report = collect([tmp_path])
    assert not report.unreadable
    assert abs(report.scalars["completion"]["epaiqa_tiny"]["accuracy"] - 0.6) < 1e-9
    assert report.scalars["completion"]["epaiqa_tiny"]["parse_failure_rate"] is None
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "**Table 3: overall editing quality (prompt completion 3)**" in out
    assert "| epaiqa_tiny_wo_cot | 0.4000 | 10 | — |" in out
    assert (tmp_path / "rep" / "completion.csv").read_text().splitlines()[0] == "model,accuracy,n,parse_failure_rate"
