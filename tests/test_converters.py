"""``epaiqa import FORMAT SRC --out ROOT``: each benchmark's on-disk layout in miniature, converted and checked."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from epaiqa.converters.commands import main
from epaiqa.data.manifest import validate
from epaiqa.data.preferences import read_preferences

PATCH = (8, 8, 16, 20)  # left, top, right, bottom of the edited patch on a 32x32 image
PATCH_BOX = (0.375, 0.4375, 0.25, 0.375)
WHOLE = (0.5, 0.5, 1.0, 1.0)


def png(path: Path, patch: tuple[int, int, int, int] | None = None, base: tuple[int, int, int] = (40, 90, 160)) -> Path:
    """A 32x32 image of one colour, with a red patch when ``patch`` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (32, 32), base)
    if patch is not None:
        img.paste((230, 30, 30), patch)
    img.save(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["import", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def converted(capsys: pytest.CaptureFixture[str], fmt: str, src: Path, root: Path, *extra: str) -> dict[str, dict]:
    """Convert, check the root validates, and return its samples by id."""
    code, out, err = run(capsys, fmt, src, "--out", root, *extra)
    assert code == 0, err
    assert err == "" and out.count("\n") == 1 and out.startswith(f"imported {fmt}")
    samples, problems = validate(root)
    assert problems == []
    lines = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    assert all(line["edit_type"] == "unknown" for line in lines)
    assert {s.id for s in samples} == {line["id"] for line in lines}
    return {line["id"]: line for line in lines}


def info(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def groups(root: Path) -> dict:
    return {g.id: g for g in read_preferences(root)}


def same_bytes(root: Path, rel: str, original: Path) -> bool:
    return (root / rel).read_bytes() == original.read_bytes()


def failed(capsys: pytest.CaptureFixture[str], fmt: str, src: Path, root: Path) -> str:
    """Convert expecting failure: one error line, exit 1, and nothing left beside ROOT."""
    code, out, err = run(capsys, fmt, src, "--out", root)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not root.exists()
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.")] == []
    return err.strip()


# -- one conversion per format ---------------------------------------------------------------------------------------


def ie_bench_src(src: Path) -> Path:
    for name in ("a.png", "b.png"):
        png(src / "src" / name)
    png(src / "dst" / "a.png", PATCH)
    png(src / "dst" / "b.png")  # nothing changed: a whole-image box
    png(src / "src_val" / "c.png")
    png(src / "dst_val" / "c.png", PATCH)
    (src / "train.txt").write_text("a.png|add a red box|a blue square|a blue square, a red box|3.4667\n")
    (src / "train.txt").open("a").write("b.png|do nothing|blue|blue|1.2\n")
    (src / "val.txt").write_text("c.png|add a red box|blue|blue and red|4.9333\n")
    return src


def test_ie_bench_label_files_keep_the_mos_as_overall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, root = ie_bench_src(tmp_path / "IE-R1-4K"), tmp_path / "root"
    samples = converted(capsys, "ie-bench", src, root)
    assert {k: v["mos"]["overall"] for k, v in samples.items()} == {"a": 3.4667, "b": 1.2, "c": 4.9333}
    assert samples["a"]["bbox"] == list(PATCH_BOX) and samples["b"]["bbox"] == list(WHOLE)
    assert {v["bbox_source"] for v in samples.values()} == {"difference"}
    assert samples["c"]["prompt"] == "add a red box" and samples["c"]["edited"] == "images/dst_val/c.png"
    assert same_bytes(root, samples["a"]["edited"], src / "dst" / "a.png")
    assert (root / samples["a"]["edited"]).stat().st_ino != (src / "dst" / "a.png").stat().st_ino  # --copy: a copy
    meta = info(root)
    assert meta["format"] == "ie-bench" and meta["kind"] == "pointwise" and "QAlign" in meta["format_version"]
    assert meta["dimensions"]["overall"]["maps_to"] == "overall" and meta["dimensions"]["overall"]["scale"] == [1, 5]
    assert meta["bbox_source"] == {"given": 0, "mask": 0, "difference": 3} and meta["whole_image_boxes"] == 1
    assert meta["benchmark_splits"] == {"train": ["a", "b"], "val": ["c"]}


def test_ie_bench_rows_with_embedded_bytes_are_written_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "hf"
    source, edited = png(tmp_path / "s.png"), png(tmp_path / "e.png", PATCH)
    b64 = base64.b64encode(edited.read_bytes()).decode()
    row = {
        "id": "x1",
        "images": [
            f"data:image/png;base64,{base64.b64encode(source.read_bytes()).decode()}",
            {"bytes": b64, "path": None},
        ],
        "edit_inst": "add a red box",
        "answer": 2.5,
    }
    src.mkdir()
    (src / "test.jsonl").write_text(json.dumps(row) + "\n")
    samples = converted(capsys, "ie-bench", src, tmp_path / "root")
    assert samples["x1"]["mos"]["overall"] == 2.5 and samples["x1"]["bbox"] == list(PATCH_BOX)
    assert same_bytes(tmp_path / "root", samples["x1"]["edited"], edited)
    assert same_bytes(tmp_path / "root", samples["x1"]["source"], source)


def test_editreward_bench_eval_files_keep_rankings_ties_and_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "edit_reward_bench"
    png(src / "img" / "src.png")
    for i, box in enumerate([PATCH, (0, 0, 8, 8), (20, 20, 30, 30), None]):
        png(src / "img" / f"out{i}.png", box)
    item = {"prompt": "add a red box", "path_src": "img/src.png"}
    two = [
        {**item, "paths_generated": ["img/out0.png", "img/out1.png"], "human_vote": {"ranking": "B>A"}},
        {**item, "paths_generated": ["img/out2.png", "img/out3.png"], "human_vote": {"ranking": "A=B=Bad"}},
    ]
    three = [{**item, "paths_generated": ["img/out0.png", "img/out1.png", "img/out2.png"],
              "human_vote": {"ranking": "C>A>B"}}]  # fmt: skip
    (src / "EditReward_Bench_2pair.json").write_text(json.dumps(two, indent=2))
    (src / "EditReward_Bench_3pair.json").write_text(json.dumps(three, indent=2))
    root = tmp_path / "root"
    samples = converted(capsys, "editreward-bench", src, root)
    assert len(samples) == 7 and samples["2pair_0001_B"]["bbox"] == list(WHOLE)
    g = groups(root)
    assert g["2pair_0000"].tiers == (("2pair_0000_B",), ("2pair_0000_A",)) and g["2pair_0000"].label == "B>A"
    assert g["2pair_0001"].tiers == (("2pair_0001_A", "2pair_0001_B"),) and g["2pair_0001"].label == "A=B=Bad"
    assert g["3pair_0000"].tiers == (("3pair_0000_C",), ("3pair_0000_A",), ("3pair_0000_B",))
    assert g["3pair_0000"].extra == {"subset": "3pair"} and g["3pair_0000"].dimension == "overall"
    assert info(root)["kind"] == "preference" and info(root)["dimensions"]["overall"]["maps_to"] == "overall"


def test_editreward_bench_hf_rows_are_joined_into_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "hf"
    png(src / "s.png")
    for letter, box in zip("ABC", [PATCH, (0, 0, 8, 8), (20, 20, 30, 30)], strict=True):
        png(src / f"{letter}.png", box)
    scores = {"A": 5.0, "B": 3.0, "C": 7.0}
    rows = [
        {"id": f"r{i}", "instruction": "add a box", "dataset": "3pair", "source_image": "s.png",
         "candidate_1": f"{x}.png", "candidate_2": f"{y}.png", "ranking": rank, "comparison_type": f"{x}vs{y}",
         "score_1": scores[x], "score_2": scores[y], "model_1": f"m{x}", "model_2": f"m{y}"}
        for i, (x, y, rank) in enumerate([("A", "B", "A>B"), ("A", "C", "C>A"), ("B", "C", "C>B")])
    ]  # fmt: skip
    rows.append({"instruction": "tie", "dataset": "2pair", "source_image": "s.png", "candidate_1": "A.png",
                 "candidate_2": "B.png", "ranking": "A=B"})  # fmt: skip
    (src / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    root = tmp_path / "root"
    samples = converted(capsys, "editreward-bench", src, root)
    assert samples["3pair_0000_C"]["other_mos"] == {"editreward_score": 7.0}
    assert samples["3pair_0000_C"]["editor"] == "mC"
    g = groups(root)
    assert g["3pair_0000"].tiers == (("3pair_0000_C",), ("3pair_0000_A",), ("3pair_0000_B",))
    assert g["3pair_0000"].label == "C>A>B" and g["3pair_0000"].extra["pairs"] == ["A>B", "C>A", "C>B"]
    assert g["2pair_0000"].tiers == (("2pair_0000_A", "2pair_0000_B"),) and g["2pair_0000"].label == "A=B"
    assert info(root)["dimensions"]["editreward_score"]["observed"] == [3.0, 7.0]


def test_editscore_pairs_prefer_the_first_output_per_dimension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "editscore"
    png(src / "in.png")
    png(src / "k1.png", PATCH)
    png(src / "k2.png", (0, 0, 8, 8))
    png(src / "k3.png", (20, 20, 30, 30))
    base = {"instruction": "add a red box", "input_image": "in.png", "task_type": "subject-add"}
    rows = [
        {**base, "key": ["k1", "k2"], "output_images": ["k1.png", "k2.png"], "dimension": "prompt_following"},
        {**base, "key": ["k2", "k1"], "output_images": ["k2.png", "k1.png"], "dimension": "consistency"},
        {**base, "key": ["k3", "k1"], "output_images": ["k3.png", "k1.png"], "dimension": "overall"},
    ]
    (src / "train.json").write_text(json.dumps(rows))
    root = tmp_path / "root"
    samples = converted(capsys, "editscore", src, root)
    assert sorted(samples) == ["k1", "k2", "k3"]
    g = groups(root)
    assert g["k1__k2__prompt_following"].tiers == (("k1",), ("k2",))
    assert g["k2__k1__consistency"].tiers == (("k2",), ("k1",)) and g["k2__k1__consistency"].label == "A>B"
    assert g["k3__k1__overall"].extra == {"task_type": "subject-add"}
    dims = info(root)["dimensions"]
    assert dims["overall"]["maps_to"] == "overall"
    assert dims["prompt_following"]["maps_to"] is None and dims["consistency"]["maps_to"] is None


def test_genai_bench_votes_become_orders_and_ties(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "genai"
    png(src / "src.png")
    png(src / "l.png", PATCH)
    png(src / "r.png", (0, 0, 8, 8))
    base = {"source_prompt": "a blue square", "target_prompt": "a blue square with a red box",
            "instruct_prompt": "add a red box", "source_image": "src.png", "left_output_image": "l.png",
            "right_output_image": "r.png", "left_model": "MagicBrush", "right_model": "InstructPix2Pix"}  # fmt: skip
    votes = ["leftvote", "rightvote", "tievote", "bothbad_vote"]
    (src / "image_edition.jsonl").write_text("".join(json.dumps({**base, "vote_type": v}) + "\n" for v in votes))
    root = tmp_path / "root"
    samples = converted(capsys, "genai-bench", src, root)
    assert (
        samples["genai_00000_A"]["editor"] == "MagicBrush" and samples["genai_00000_B"]["editor"] == "InstructPix2Pix"
    )
    g = groups(root)
    assert g["genai_00000"].tiers == (("genai_00000_A",), ("genai_00000_B",))
    assert g["genai_00001"].tiers == (("genai_00001_B",), ("genai_00001_A",))
    assert g["genai_00002"].tiers == (("genai_00002_A", "genai_00002_B"),) and g["genai_00002"].label == "tievote"
    assert g["genai_00003"].tiers == (("genai_00003_A", "genai_00003_B"),) and g["genai_00003"].label == "bothbad_vote"
    assert len(list((root / "images").rglob("*.png"))) == 3  # one copy of each file however often it is named


def imagenhub_src(src: Path) -> Path:
    for uid in ("sample_1_1.jpg", "sample_2_1.jpg"):
        png(src / "input" / uid)
        png(src / "M1" / uid, PATCH)
        png(src / "M2" / uid, (0, 0, 8, 8))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (4, 4, 12, 28))
    (src / "mask").mkdir()
    mask.save(src / "mask" / "sample_1_1.jpg", quality=95)  # ImagenHub saves masks as JPEG, white = edited
    lookup = {u: {"source_global_caption": "blue", "instruction": f"edit {u}", "target_global_caption": "red"}
              for u in ("sample_1_1.jpg", "sample_2_1.jpg")}  # fmt: skip
    (src / "dataset_lookup.json").write_text(json.dumps(lookup))
    cells = {
        1: ["[1, 1]\t[0,0]", "[0.5, 0]\t[1,1]"],
        2: ["[0.5, 1]\t[0,0]", "[0.5, 0.5]\t[1,1]"],
        3: ["[1, 0.5]\t[0,0]", "[0.5, 1]\t"],  # rater 3 left one cell empty
    }
    for rater, rows in cells.items():
        text = "uid\tM1\tM2\n" + "".join(f"sample_{i}_1.jpg\t{row}\n" for i, row in enumerate(rows, start=1))
        (src / f"Text-Guided_IE_rater{rater}.tsv").write_text(text)
    return src


def test_imagenhub_raters_are_averaged_on_their_own_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, root = imagenhub_src(tmp_path / "ImagenHub_Text-Guided_IE"), tmp_path / "root"
    samples = converted(capsys, "imagenhub", src, root)
    m1 = samples["M1_sample_1_1"]["other_mos"]
    assert m1["sc"] == pytest.approx(0.8333, abs=1e-4) and m1["pq"] == pytest.approx(0.8333, abs=1e-4)
    assert m1["imagenhub_overall"] == pytest.approx((1 + 2 * math.sqrt(0.5)) / 3)
    assert samples["M2_sample_2_1"]["other_mos"] == {"sc": 1.0, "pq": 1.0, "imagenhub_overall": 1.0}  # 2 raters
    m1b = samples["M1_sample_2_1"]["other_mos"]  # [0.5, 0], [0.5, 0.5], [0.5, 1]
    assert m1b["sc"] == 0.5 and m1b["pq"] == 0.5 and m1b["imagenhub_overall"] == pytest.approx(0.4024, abs=1e-4)
    assert all(v["mos"] == {"overall": None, "harmony": None, "naturalness": None, "completion": None}
               for v in samples.values())  # fmt: skip
    assert samples["M1_sample_1_1"]["bbox_source"] == "mask" and samples["M1_sample_1_1"]["bbox"] == [
        0.25,
        0.5,
        0.25,
        0.75,
    ]
    assert samples["M1_sample_2_1"]["bbox_source"] == "difference"
    assert samples["M2_sample_1_1"]["editor"] == "M2" and samples["M2_sample_1_1"]["prompt"] == "edit sample_1_1.jpg"
    dims = info(root)["dimensions"]
    assert [dims[d]["scale"] for d in ("sc", "pq", "imagenhub_overall")] == [[0, 1]] * 3
    assert all(dims[d]["maps_to"] is None for d in dims)


def test_aurora_scores_stay_unmapped_with_their_observed_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "aurora"
    png(src / "in.png")
    png(src / "gen" / "a.png", PATCH)
    png(src / "gen" / "b.png", (0, 0, 8, 8))
    items = [
        {"prompt": "add a box", "input": "in.png", "gen": "gen/a.png", "score": 7.5, "model": "AURORA"},
        {"prompt": "add a box", "input": "in.png", "gen": "gen/b.png", "score": 2, "model": "MagicBrush"},
    ]
    (src / "human_ratings.json").write_text(json.dumps(items, indent=1))
    root = tmp_path / "root"
    samples = converted(capsys, "aurora", src, root, "--link")
    assert (
        samples["aurora_00000"]["other_mos"] == {"aurora_score": 7.5}
        and samples["aurora_00001"]["editor"] == "MagicBrush"
    )
    assert samples["aurora_00000"]["mos"]["overall"] is None
    dim = info(root)["dimensions"]["aurora_score"]
    assert dim["scale"] is None and dim["maps_to"] is None and dim["observed"] == [2.0, 7.5]
    assert (root / samples["aurora_00000"]["edited"]).stat().st_ino == (src / "gen" / "a.png").stat().st_ino  # --link


# -- bad input: one line naming the file and line, exit 1, no ROOT ---------------------------------------------------


def test_a_malformed_json_line_is_named_by_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "aurora"
    png(src / "in.png")
    good = {"prompt": "p", "input": "in.png", "gen": "in.png", "score": 1}
    (src / "r.jsonl").write_text(json.dumps(good) + '\n{"prompt": "p", "input": \n')
    assert failed(capsys, "aurora", src, tmp_path / "root").startswith("error: r.jsonl:2: json: not valid JSON")


def test_a_malformed_record_in_a_json_list_is_named_by_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "genai"
    png(src / "s.png")
    row = {"instruct_prompt": "p", "source_image": "s.png", "left_output_image": "s.png", "right_output_image": "s.png"}
    (src / "rows.json").write_text(
        json.dumps([{**row, "vote_type": "leftvote"}, {**row, "vote_type": "leftvotes"}], indent=2)
    )
    err = failed(capsys, "genai-bench", src, tmp_path / "root")
    assert err.startswith("error: rows.json:9: vote_type: unknown vote label 'leftvotes'")


def test_a_bad_tsv_cell_and_a_bad_label_line_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = imagenhub_src(tmp_path / "ih")
    tsv = src / "Text-Guided_IE_rater2.tsv"
    tsv.write_text(tsv.read_text().replace("[0.5, 0.5]", "[0.7, 1]"))
    err = failed(capsys, "imagenhub", src, tmp_path / "root")
    assert err == "error: Text-Guided_IE_rater2.tsv:3: M1: cell '[0.7, 1]' is not [SC, PQ] with values 0, 0.5 or 1"
    ie = ie_bench_src(tmp_path / "ie")
    (ie / "val.txt").write_text("c.png|add|x|y|high\n")
    assert failed(capsys, "ie-bench", ie, tmp_path / "root").startswith("error: val.txt:1: mos: must be a number")
    (ie / "val.txt").write_text("c.png|add|x|y|7.2\n")
    err = failed(capsys, "ie-bench", ie, tmp_path / "root")
    assert err == "error: val.txt:1: mos: 7.2 is outside IE-Bench's MOS's scale [1, 5] (nothing is rescaled)"


def test_a_missing_image_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = ie_bench_src(tmp_path / "ie")
    (src / "dst" / "b.png").unlink()
    assert failed(capsys, "ie-bench", src, tmp_path / "root") == "error: train.txt:2: name: image not found: dst/b.png"


def test_a_path_leaving_src_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bench"
    png(src / "in.png")
    png(tmp_path / "secret.png", PATCH)  # exists, but outside SRC
    items = [{"prompt": "p", "input": "in.png", "gen": "../secret.png", "score": 1}]
    (src / "r.json").write_text(json.dumps(items))
    err = failed(capsys, "aurora", src, tmp_path / "root")
    assert err.startswith("error: r.json:1: gen: '../secret.png' leaves SRC")
    items[0]["gen"] = str(tmp_path / "secret.png")  # an absolute path outside SRC too
    (src / "r.json").write_text(json.dumps(items))
    assert "leaves SRC" in failed(capsys, "aurora", src, tmp_path / "root")


def test_a_failed_conversion_leaves_an_existing_root_alone_and_force_replaces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, root = ie_bench_src(tmp_path / "ie"), tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "ie-bench", src, "--out", root)
    assert code == 1 and "already exists (add --force to replace it)" in err and (root / "keep.txt").exists()
    (src / "val.txt").write_text("c.png|add|x|y|0\n")
    code, _, err = run(capsys, "ie-bench", src, "--out", root, "--force")
    assert code == 1 and "val.txt:1: mos:" in err and (root / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ie", "root"]
    (src / "val.txt").write_text("c.png|add|x|y|2\n")
    converted(capsys, "ie-bench", src, root, "--force")
    assert not (root / "keep.txt").exists()
    code, _, err = run(capsys, "ie-bench", src, "--out", src, "--force")
    assert code == 1 and "holds SRC" in err and (src / "train.txt").exists()


def test_the_epaiqa_cli_imports_and_a_baseline_scores_the_converted_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], baseline_sweep: Path
) -> None:
    """The whole path a user takes: import a preference set, score it with a trained run, preference accuracy."""
    from epaiqa import cli

    src = ie_bench_src(tmp_path / "ie")
    assert cli.main(["import", "ie-bench", str(src), "--out", str(tmp_path / "ie_root")]) == 0
    assert validate(tmp_path / "ie_root")[1] == []
    assert cli.main(["import", "ie-bench", str(src), "--out", str(tmp_path / "ie_root")]) == 1  # exists: --force
    assert capsys.readouterr().err.count("\n") == 1
    src = tmp_path / "erb"
    png(src / "img" / "src.png")
    for i, box in enumerate([PATCH, (0, 0, 8, 8), (20, 20, 30, 30)]):
        png(src / "img" / f"out{i}.png", box)
    item = {"prompt": "add a red box", "path_src": "img/src.png", "paths_generated": ["img/out0.png", "img/out1.png"]}
    (src / "EditReward_Bench_2pair.json").write_text(json.dumps([{**item, "human_vote": {"ranking": "B>A"}}]))
    three = {**item, "paths_generated": [*item["paths_generated"], "img/out2.png"], "human_vote": {"ranking": "C>A>B"}}
    (src / "EditReward_Bench_3pair.json").write_text(json.dumps([three]))
    root, scores = tmp_path / "root", tmp_path / "scores.jsonl"
    assert cli.main(["import", "editreward-bench", str(src), "--out", str(root)]) == 0
    assert cli.main(["score", str(baseline_sweep / "harmony"), "--manifest", str(root), "--out", str(scores)]) == 0
    argv = ["evaluate", "--pairs", "--root", str(root), "--predictions", str(scores), "--name", "wadiqam"]
    assert cli.main([*argv, "--out", str(tmp_path / "pairs")]) == 0
    record = json.loads((tmp_path / "pairs" / "preferences.json").read_text())
    table = record["accuracy"]["dimensions"]["overall"]
    assert table["pairs"] == 4 and table["groups"] == 2 and 0.0 <= table["acc_strict"] <= 1.0
    assert record["best_of_n"]["overall"]["groups"] == 2 and set(table["by_edit_type"]) == {"unknown"}


def test_every_registered_format_names_the_source_it_follows() -> None:
    from epaiqa.converters.registry import FORMATS, converters

    found = converters()
    assert (
        list(found)
        == list(FORMATS)
        == ["ie-bench", "editreward-bench", "editscore", "genai-bench", "imagenhub", "aurora"]
    )
    assert all("commit" in c.version for c in found.values())
