import json
import subprocess
import sys
from pathlib import Path

from epaiqa.cli import main


def test_validate_ok(demo_root: Path, capsys) -> None:
    assert main(["validate", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 48 samples")


def test_validate_reports_every_problem_and_exits_1(demo_copy: Path, capsys) -> None:
    records = (demo_copy / "manifest.jsonl").read_text().splitlines()
    first, second = json.loads(records[0]), json.loads(records[1])
    first["bbox"] = [0.5, 0.5, 2, 2]
    second["edited"] = "../../etc/passwd"
    records[0], records[1] = json.dumps(first), json.dumps(second)
    (demo_copy / "manifest.jsonl").write_text("\n".join(records) + "\n")
    assert main(["validate", str(demo_copy)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("manifest.jsonl:1: bbox: ")
    assert out[1].startswith("manifest.jsonl:2: edited: ")
    assert len(out) == 2


def test_prepare_rewrites_mos_and_splits(demo_copy: Path, capsys) -> None:
    (demo_copy / "splits.json").unlink()
    records = [json.loads(line) for line in (demo_copy / "manifest.jsonl").read_text().splitlines()]
    for rec in records:
        rec["mos"] = {}
    (demo_copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["prepare", str(demo_copy), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "conflicting" in out and "harmony: train" in out
    again = [json.loads(line) for line in (demo_copy / "manifest.jsonl").read_text().splitlines()]
    assert all(rec["mos"]["harmony"] is not None for rec in again)
    assert (demo_copy / "splits.json").is_file()


def test_prepare_with_bad_ratings_prints_lines_not_traceback(demo_copy: Path) -> None:
    with (demo_copy / "ratings.csv").open("a") as fh:
        fh.write("000001,r99,9,3,3,3\n")
    result = subprocess.run(
        [sys.executable, "-m", "epaiqa.cli", "prepare", str(demo_copy)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "overall: 9 is outside the scale [1, 5]" in result.stderr


def test_demo_data_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo-data", "--out", str(out), "--n", "8", "--seed", "2", "--size", "64"]) == 0
    assert "synthetic" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    assert main(["demo-data", "--out", str(out), "--n", "8"]) == 1  # refuses to overwrite
