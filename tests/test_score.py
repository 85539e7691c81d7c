"""`epaiqa score` and `epaiqa.load_scorer`: one pair, a whole dataset with resume, bad input in one line."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epaiqa import load_scorer
from epaiqa.cli import main
from epaiqa.data.crops import difference_bbox
from epaiqa.data.manifest import load_manifest
from epaiqa.records.imported import evaluate_predictions
from epaiqa.records.results import read_record


@pytest.fixture
def run(baseline_sweep: Path) -> Path:
    """A naturalness baseline run (region view) trained for two batches."""
    return baseline_sweep / "naturalness"


def test_difference_bbox_finds_the_changed_rectangle() -> None:
    source = np.full((40, 80, 3), 100, np.uint8)
    edited = source.copy()
    edited[10:30, 20:60] = 200
    bbox = difference_bbox(Image.fromarray(source), Image.fromarray(edited))
    assert bbox == pytest.approx((0.5, 0.5, 0.5, 0.5))
    assert difference_bbox(Image.fromarray(source), Image.fromarray(source)) is None


def test_one_pair_from_the_cli_and_from_python(run: Path, demo_root: Path, capsys) -> None:
    sample = load_manifest(demo_root)[0]
    src, edit = str(demo_root / sample.source), str(demo_root / sample.edited)
    assert main(["score", str(run), "--source", src, "--edited", edit, "--prompt", sample.prompt]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "naturalness" and out["bbox_source"] == "difference" and isinstance(out["score"], float)
    assert out["level"] in ("bad", "poor", "fair", "good", "excellent") and out["model"] == "wadiqam_nr"
    given = load_scorer(run)(source=src, edited=edit, bbox=sample.bbox)
    assert given["bbox_source"] == "given" and given["bbox"] == pytest.approx(list(sample.bbox), abs=1e-6)
    rows = {r.split(",")[0]: r.split(",") for r in (run / "predictions.csv").read_text().splitlines()[1:]}
    if sample.id in rows:  # a test sample: the same prediction the run wrote
        assert given["score"] == pytest.approx(float(rows[sample.id][4]), abs=1e-5)


def test_a_dataset_is_scored_resumably_and_feeds_evaluate(run: Path, demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(run), "--manifest", str(demo_root), "--out", str(out), "--batch-size", "7"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == len(load_manifest(demo_root)) and {
        "id",
        "score",
        "level",
        "task",
        "score_1_5",
        "reward",
    } == set(json.loads(lines[0]))
    out.write_text("\n".join(lines[:10]) + "\n" + lines[10][:15])  # killed while writing line 11
    scorer = load_scorer(run)
    assert scorer.score_manifest(demo_root, out, batch_size=5) == (len(lines) - 10, 10)
    before = {r["id"]: r["score"] for r in map(json.loads, lines)}
    after = {r["id"]: r["score"] for r in map(json.loads, out.read_text().splitlines())}
    assert after.keys() == before.keys() and list(after.values()) == pytest.approx(list(before.values()), abs=1e-5)
    imported = evaluate_predictions(demo_root, "naturalness", out, "scored")
    assert imported.record.test["all"]["srcc"] == pytest.approx(read_record(run).test["all"]["srcc"], abs=1e-6)


def test_bad_input_is_one_line(run: Path, demo_root: Path, tmp_path: Path, capsys) -> None:
    sample = load_manifest(demo_root)[0]
    src, edit = str(demo_root / sample.source), str(demo_root / sample.edited)
    assert main(["score", str(run), "--source", src, "--edited", edit, "--bbox", "0.9,0.5,0.5,0.5"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: bbox: box leaves the image horizontally")
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(run), "--source", src, "--edited", edit, "--bbox", "0.5,0.5"])
    assert exit_info.value.code == 2 and "four numbers cx,cy,w,h" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert main(["score", str(run), "--source", src, "--edited", str(tmp_path / "broken.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.png" in err
    assert main(["score", str(run), "--source", src]) == 2
    assert main(["score", str(tmp_path), "--source", src, "--edited", edit]) == 1
    assert "results.json" in capsys.readouterr().err


def _test_row(run: Path, task: str) -> dict[str, str]:
    import csv

    return next(r for r in csv.DictReader((run / "predictions.csv").open()) if r["task"] == task)


def test_a_stage2_run_scores_its_dimensions_as_it_tested(lmm_chain: dict[str, Path], demo_root: Path, capsys) -> None:
    run = lmm_chain["s2"]
    by_id = {s.id: s for s in load_manifest(demo_root)}
    row = _test_row(run, "harmony")
    sample = by_id[row["id"]]
    src, edit = str(demo_root / sample.source), str(demo_root / sample.edited)
    bbox = ",".join(str(v) for v in sample.bbox)
    assert main(["score", str(run), "--source", src, "--edited", edit, "--bbox", bbox]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stage"] == "scoring" and out["lineage"] == ["grounding", "scoring"] and out["bbox_source"] == "given"
    assert set(out) >= {"harmony", "naturalness"} and "overall" not in out and "explanation" not in out
    assert out["harmony"]["score"] == pytest.approx(float(row["pred"]), abs=1e-4)
    assert out["harmony"]["level"] == ("bad", "poor", "fair", "good", "excellent")[round(out["harmony"]["score"]) - 1]
    assert 1.0 <= out["naturalness"]["score"] <= 5.0
    # without a bbox: stage 1 is in the lineage, so the model is asked first; the tiny one answers no box
    scorer = load_scorer(run)
    free = scorer(src, edit)
    assert free["bbox_source"] in ("grounding (stage 1)", "difference (the stage-1 answer did not parse)")
    # many pairs in one batch (what the server sends): each answer as the pair alone gets it
    other = next(s for s in by_id.values() if s.id != sample.id)
    pairs = [{"source": src, "edited": edit, "bbox": sample.bbox}]
    pairs.append({"source": str(demo_root / other.source), "edited": str(demo_root / other.edited), "bbox": other.bbox})
    together = scorer.score_pairs(pairs)
    for pair, answer in zip(pairs, together, strict=True):
        alone = scorer(pair["source"], pair["edited"], "", pair["bbox"])
        for dim in ("harmony", "naturalness"):
            assert answer[dim]["score"] == pytest.approx(alone[dim]["score"], abs=1e-4)


def test_a_stage3_run_explains_and_scores_every_dimension(
    lmm_chain: dict[str, Path], demo_root: Path, tmp_path: Path
) -> None:
    run = lmm_chain["s3"]
    by_id = {s.id: s for s in load_manifest(demo_root)}
    explained = {r["id"]: r for r in map(json.loads, (run / "explanations.jsonl").read_text().splitlines())}
    row = _test_row(run, "overall")
    sample = by_id[row["id"]]
    scorer = load_scorer(run)
    out = scorer(demo_root / sample.source, demo_root / sample.edited, sample.prompt, sample.bbox)
    assert out["stage"] == "explain" and {"harmony", "naturalness", "overall", "completion", "explanation"} <= set(out)
    assert out["explanation"] == explained[sample.id]["explanation"]
    # the run showed context views (data.explain_view=context): the same score means the scorer showed them too
    assert {json.loads(p.read_text())["data"]["view"] for p in run.rglob("results.json")} == {"context"}
    assert out["overall"]["score"] == pytest.approx(float(row["pred"]), abs=1e-4)
    assert set(out["completion"]) == {"level", "verdict"}
    scores = tmp_path / "scores.jsonl"
    ids = list(explained)
    assert main(["score", str(run), "--manifest", str(demo_root), "--out", str(scores), "--batch-size", "16"]) == 0
    lines = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(lines) == len(by_id) and lines[0]["task"] == "overall"
    assert {"score", "level", "harmony", "harmony_level", "naturalness", "overall", "completion", "explanation"} <= set(
        lines[0]
    )
    mine = {r["id"]: r for r in lines}
    assert [mine[i]["overall"] for i in ids] == pytest.approx([explained[i]["pred"] for i in ids], abs=1e-4)
    for field in ("overall", "harmony"):
        imported = evaluate_predictions(demo_root, field, scores, "scored", field=field)
        assert imported.record.test["all"]["n"] > 0
