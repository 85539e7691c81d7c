import json
import shutil
from pathlib import Path

import pytest

from epaiqa.data.manifest import load_manifest, validate
from epaiqa.errors import DataError


def lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def rewrite(root: Path, records: list) -> None:
    (root / "manifest.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def problems_after(root: Path, line_no: int, change) -> list[str]:
    records = lines(root)
    change(records[line_no - 1])
    rewrite(root, records)
    _, problems = validate(root)
    return [str(p) for p in problems]


def test_demo_root_is_valid(demo_root: Path) -> None:
    samples, problems = validate(demo_root)
    assert problems == []
    assert len(samples) == len(lines(demo_root))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "source",
            "/etc/passwd",
            "manifest.jsonl:2: source: '/etc/passwd' must be a path relative to the dataset root",
        ),
        ("edited", "../outside.jpg", "manifest.jsonl:2: edited: '../outside.jpg' leaves the dataset root"),
        ("edited", "edited/missing.jpg", "manifest.jsonl:2: edited: edited/missing.jpg: file not found"),
        ("bbox", [0.5, 0.5, 1.5, 0.2], "manifest.jsonl:2: bbox: values must lie in [0, 1]"),
        ("bbox", [0.9, 0.5, 0.4, 0.2], "manifest.jsonl:2: bbox: box leaves the image horizontally"),
        ("bbox", [0.5, 0.05, 0.2, 0.4], "manifest.jsonl:2: bbox: box leaves the image vertically"),
        ("bbox", [0.5, 0.5, 0.0, 0.2], "manifest.jsonl:2: bbox: width and height must be positive"),
        ("bbox", [0.5, 0.5, 0.2], "manifest.jsonl:2: bbox: must be four numbers"),
        ("bbox", [0.5, 0.5, 0.001, 0.2], "manifest.jsonl:2: bbox: box is under one pixel on a 96x96 image"),
        ("edit_type", "colourise", "manifest.jsonl:2: edit_type: unknown type 'colourise'"),
        ("prompt", "  ", "manifest.jsonl:2: prompt: must be a non-empty string"),
        ("mos", {"harmony": 7}, "manifest.jsonl:2: mos.harmony: 7 is outside the scale [1, 5]"),
        ("mos", {"completion": 2.5}, "manifest.jsonl:2: mos.completion: must be a whole level 1, 2 or 3"),
        ("mos", {"overall": "high"}, "manifest.jsonl:2: mos.overall: must be a number or null"),
        ("mos", {"beauty": 3}, "manifest.jsonl:2: mos.beauty: unknown dimension"),
        ("cot", {"harmony": 3}, "manifest.jsonl:2: cot.harmony: must be text"),
    ],
)
def test_each_bad_field_is_reported_by_line_and_field(demo_copy: Path, field: str, value, expected: str) -> None:
    problems = problems_after(demo_copy, 2, lambda rec: rec.__setitem__(field, value))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_missing_field_and_bad_json_and_duplicate_id(demo_copy: Path) -> None:
    records = lines(demo_copy)
    del records[0]["prompt"]
    records[2]["id"] = records[1]["id"]
    records[3] = '{"id": "x", broken'
    rewrite(demo_copy, records)
    problems = [str(p) for p in validate(demo_copy)[1]]
    assert "manifest.jsonl:1: prompt: missing" in problems
    assert any(p.startswith("manifest.jsonl:3: id: ") and "already used on line 2" in p for p in problems)
    assert any(p.startswith("manifest.jsonl:4: json: not valid JSON") for p in problems)
    assert len(problems) == 3


def test_corrupt_and_truncated_images(demo_copy: Path) -> None:
    records = lines(demo_copy)
    (demo_copy / records[0]["edited"]).write_bytes(b"not an image at all")
    data = (demo_copy / records[1]["edited"]).read_bytes()
    (demo_copy / records[1]["edited"]).write_bytes(data[: len(data) // 3])
    problems = [str(p) for p in validate(demo_copy)[1]]
    assert any(p.startswith(f"manifest.jsonl:1: edited: {records[0]['edited']}: does not decode") for p in problems)
    assert any(p.startswith(f"manifest.jsonl:2: edited: {records[1]['edited']}: does not decode") for p in problems)


def test_symlink_leaving_root_is_rejected(demo_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    records = lines(demo_copy)
    shutil.copy(demo_copy / records[0]["edited"], outside)
    (demo_copy / "edited" / "link.jpg").symlink_to(outside)
    problems = problems_after(demo_copy, 1, lambda rec: rec.__setitem__("edited", "edited/link.jpg"))
    assert problems == ["manifest.jsonl:1: edited: 'edited/link.jpg' leaves the dataset root"]


def test_missing_root_or_manifest(tmp_path: Path) -> None:
    assert "not a directory" in str(validate(tmp_path / "nope")[1][0])
    assert "manifest.jsonl:0: file: not found" in str(validate(tmp_path)[1][0])
    (tmp_path / "manifest.jsonl").write_text("\n")
    assert "holds no samples" in str(validate(tmp_path)[1][0])


def test_load_manifest_raises_one_error_with_every_problem(demo_copy: Path) -> None:
    records = lines(demo_copy)
    records[0]["edit_type"] = "nope"
    records[4]["bbox"] = [2, 2, 2, 2]
    rewrite(demo_copy, records)
    with pytest.raises(DataError) as err:
        load_manifest(demo_copy)
    assert len(err.value.problems) == 2
    assert "2 problems" in str(err.value)
