import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    assert "dataset root not found" in str(validate(tmp_path / "nope")[1][0])
    (tmp_path / "file").write_text("x")
    assert "not a directory" in str(validate(tmp_path / "file")[1][0])
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


def use_image(root: Path, name: str, make, bbox=None) -> list[str]:
    """Point line 1's edited image at a new file made by ``make(path)``; the problems validate reports."""
    path = root / "edited" / name
    make(path)

    def change(rec: dict) -> None:
        rec["edited"] = f"edited/{name}"
        if bbox is not None:
            rec["bbox"] = bbox

    return problems_after(root, 1, change)


def exif6(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 60), (90, 90, 90)).save(path, exif=exif)


def test_bbox_is_measured_on_the_displayed_exif_image(demo_copy: Path) -> None:
    # displayed 60 wide x 100 high: 0.012 of the width is 0.72 px, of the height 1.2 px (stored: the reverse)
    assert use_image(demo_copy, "e6.jpg", exif6, bbox=[0.5, 0.5, 0.5, 0.012]) == []
    assert use_image(demo_copy, "e6.jpg", exif6, bbox=[0.5, 0.5, 0.012, 0.5]) == [
        "manifest.jsonl:1: bbox: box is under one pixel on a 60x100 image"
    ]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("g16.png", lambda p: Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(p)),
        ("pal.png", lambda p: Image.new("P", (40, 40), 1).save(p, transparency=0)),
        ("rgba.png", lambda p: Image.new("RGBA", (40, 40), (1, 2, 3, 4)).save(p)),
        ("one.gif", lambda p: Image.new("RGB", (40, 40), "red").save(p)),
    ],
)
def test_16_bit_palette_alpha_and_still_gif_images_are_accepted(demo_copy: Path, name: str, make) -> None:
    assert use_image(demo_copy, name, make) == []


def animated(path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


@pytest.mark.parametrize("name", ["anim.gif", "anim.webp"])
def test_animated_images_are_reported_by_line(demo_copy: Path, name: str) -> None:
    assert use_image(demo_copy, name, animated) == [
        f"manifest.jsonl:1: edited: edited/{name}: is animated (2 frames); only still images are accepted"
    ]


def test_oversized_image_is_reported_by_line(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPAIQA_MAX_PIXELS", "5000")
    problems = [str(p) for p in validate(demo_copy)[1]]
    assert len(problems) == 2 * len(lines(demo_copy))  # every source and edited image of the 96x96 set
    assert problems[0] == (
        f"manifest.jsonl:1: source: {lines(demo_copy)[0]['source']}: is 96x96 = 9,216 pixels, "
        "over the limit of 5,000 (set EPAIQA_MAX_PIXELS to raise it)"
    )


def test_manifest_with_byte_order_mark_is_read(demo_copy: Path) -> None:
    path = demo_copy / "manifest.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    samples, problems = validate(demo_copy)
    assert problems == [] and len(samples) == 48


def splits(root: Path) -> dict:
    return json.loads((root / "splits.json").read_text())


def test_validate_checks_splits_json(demo_copy: Path) -> None:
    data = splits(demo_copy)
    data["subsets"]["harmony"]["test"].append("nope")
    (demo_copy / "splits.json").write_text(json.dumps(data))
    assert [str(p) for p in validate(demo_copy)[1]] == [
        "splits.json:0: subsets.harmony.test: 1 ids are not in the manifest, e.g. 'nope'"
    ]

    data = splits(demo_copy)
    data["subsets"]["harmony"]["test"].remove("nope")
    moved = data["subsets"]["overall"]["test"][0]
    data["subsets"]["naturalness"]["train"].append(moved)
    (demo_copy / "splits.json").write_text(json.dumps(data))
    problems = [str(p) for p in validate(demo_copy)[1]]
    assert problems == [
        f"splits.json:0: subsets.naturalness.train: 1 ids are also in a test set (naturalness, harmony, overall), "
        f"e.g. {moved!r}"
    ]

    (demo_copy / "splits.json").write_text('{"subsets": {"harmony": ')
    assert [str(p) for p in validate(demo_copy)[1]] == [
        "splits.json:0: json: not valid JSON (Expecting value at line 1 column 25)"
    ]
    with pytest.raises(DataError, match=r"dataset root .* is invalid \(1 problems\)"):
        load_manifest(demo_copy)
    (demo_copy / "splits.json").write_text("[1, 2]")
    first = str(validate(demo_copy)[1][0])
    assert first.startswith("splits.json:0: subsets: missing or not an object")
    assert load_manifest(demo_copy, check_splits=False)


def test_splits_ids_are_not_reported_again_for_a_broken_manifest_line(demo_copy: Path) -> None:
    records = lines(demo_copy)
    records[0] = '{"id": broken'
    rewrite(demo_copy, records)
    assert [str(p)[:30] for p in validate(demo_copy)[1]] == ["manifest.jsonl:1: json: not va"]


def test_a_remembered_root_is_decoded_once_and_a_changed_image_again(
    demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import epaiqa.data.manifest as manifest

    monkeypatch.setenv("EPAIQA_CACHE", str(tmp_path / "cache"))
    decoded: list[Path] = []
    real = manifest.image_problem
    monkeypatch.setattr(manifest, "image_problem", lambda path: decoded.append(path) or real(path))
    first, problems = validate(demo_copy, remember=True)
    images = {p for s in first for p in (s.source, s.edited)}
    assert not problems and len(decoded) == len(images)  # every source and edited image, once
    decoded.clear()
    again, problems = validate(demo_copy, remember=True)
    assert not problems and decoded == [] and again == first
    edited = demo_copy / first[0].edited
    edited.write_bytes(edited.read_bytes()[:200])  # truncated since: decoded again and reported
    _, problems = validate(demo_copy, remember=True)
    assert [p.field for p in problems] == ["edited"] and decoded == [edited]
    decoded.clear()
    validate(demo_copy)  # without remember (epaiqa validate): everything is decoded
    assert len(decoded) == len(images)
