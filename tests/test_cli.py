import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "split: seed 1, test fraction 0.2, group by source (a new split; --resplit to split again)" in out
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


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_demo_data_to_an_impossible_path_is_one_line(tmp_path: Path, capsys, where: str) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "demo" if where == "under_a_file" else Path("/proc/epaiqa-test/demo")
    assert main(["demo-data", "--out", str(out), "--n", "8", "--size", "32"]) == 1
    line = one_error_line(capsys)
    assert str(out) in line or str(out.parent) in line, line
    assert main(["demo-data", "--out", str(tmp_path / "file"), "--n", "8"]) == 1
    assert one_error_line(capsys) == f"error: {tmp_path / 'file'}: exists and is not a directory"


@pytest.mark.parametrize("args", [["--size", "0"], ["--size", "-5"], ["--n", "0"], ["--n", "-1"], ["--n", "x"]])
def test_demo_data_bad_numbers_are_usage_errors_before_any_folder(tmp_path: Path, capsys, args: list[str]) -> None:
    out = tmp_path / "new" / "demo"
    with pytest.raises(SystemExit) as exit_:
        main(["demo-data", "--out", str(out), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {args[0]}:" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["validate", "prepare"])
def test_missing_or_file_root_is_one_line(tmp_path: Path, capsys, command: str) -> None:
    assert main([command, str(tmp_path / "nope")]) == 1
    assert one_error_line(capsys) == f"error: {tmp_path / 'nope'}: dataset root not found"
    (tmp_path / "file").write_text("x")
    assert main([command, str(tmp_path / "file")]) == 1
    assert one_error_line(capsys) == f"error: {tmp_path / 'file'}: is not a directory"


def test_validate_fails_on_a_bad_splits_file(demo_copy: Path, capsys) -> None:
    (demo_copy / "splits.json").write_text('{"subsets": {}}')
    assert main(["validate", str(demo_copy), "--no-images"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"splits.json:0: subsets.{task}: missing or not an object with train and test lists"
        for task in ("naturalness", "harmony", "overall")
    ]


def test_file_system_error_is_one_line_naming_the_path(demo_copy: Path, capsys) -> None:
    (demo_copy / "splits.json").unlink()
    (demo_copy / "splits.json").mkdir()  # the new split cannot replace a folder
    before = (demo_copy / "manifest.jsonl").read_bytes()
    assert main(["prepare", str(demo_copy)]) == 1
    assert str(demo_copy / "splits.json") in one_error_line(capsys)
    assert (demo_copy / "manifest.jsonl").read_bytes() == before
