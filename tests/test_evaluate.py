"""``epaiqa evaluate``: an external model's per-sample predictions scored like a run (kind: imported)."""

import json
from pathlib import Path

import pytest

from epaiqa.cli import main
from epaiqa.data.manifest import load_manifest
from epaiqa.data.splits import load_splits
from epaiqa.records.results import read_record
from epaiqa.report.tables import collect


def _split(root: Path, task: str, part: str = "test") -> list[tuple[str, float]]:
    samples = load_manifest(root)
    by_id = {s.id: s for s in samples}
    return [(i, float(by_id[i].score(task))) for i in load_splits(root, samples)[task][part]]


def _evaluate(root: Path, task: str, predictions: Path, out: Path, name: str = "ext") -> int:
    args = ["evaluate", "--root", str(root), "--task", task, "--predictions", str(predictions), "--name", name]
    return main([*args, "--out", str(out)])


def test_csv_predictions_become_a_record_that_report_reads(demo_root: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    test = _split(demo_root, "harmony")
    extra = _split(demo_root, "harmony", "train")[:3]  # samples of the dataset outside the test split
    rows = [f"{i},{mos * 2 + 1}" for i, mos in test] + [f"{i},3" for i, _ in extra]
    (tmp_path / "p.csv").write_text("id,score\n" + "\n".join(rows) + "\n")
    assert _evaluate(demo_root, "harmony", tmp_path / "p.csv", tmp_path / "run", "oneline") == 0
    record = read_record(tmp_path / "run")
    assert (record.kind, record.model, record.task, record.n) == ("imported", "oneline", "harmony", len(test))
    assert record.test["all"]["srcc"] == pytest.approx(1.0) and record.test["all"]["plcc"] == pytest.approx(1.0)
    assert sum(record.test[t]["n"] for t in record.test if t != "all") == len(test)
    assert record.data_fingerprint and record.data["split"] == "test"
    assert "3 predictions are for samples outside the harmony test split" in capsys.readouterr().out
    (row,) = collect([tmp_path]).tables["harmony"]
    assert row.label == "oneline"


def test_jsonl_predictions_of_the_overall_task_carry_the_completion3_subset(demo_root: Path, tmp_path: Path) -> None:
    test = _split(demo_root, "overall")
    lines = [json.dumps({"id": i, "pred": -mos}) for i, mos in test]  # anti-correlated on purpose
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    assert _evaluate(demo_root, "overall", tmp_path / "p.jsonl", tmp_path / "run") == 0
    record = read_record(tmp_path / "run")
    assert record.test["all"]["srcc"] == pytest.approx(-1.0)
    samples = {s.id: s for s in load_manifest(demo_root)}
    completion3 = [i for i, _ in test if samples[i].score("completion") == 3]
    assert record.subsets["completion3"]["test"]["all"]["n"] == len(completion3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("id,score\nnope,3\n", "(1): 'nope'"),
        ("id,value\n{first},3\n", "the header needs an 'id' and a 'score' (or 'pred') column"),
        ("id,score\n{first},high\n", "p.csv:2: the score must be a finite number, got 'high'"),
        ("id,score\n{first},nan\n", "p.csv:2: the score must be a finite number"),
        ("id,score\n{first},3\n{first},4\n", "p.csv:3: id '{first}' is predicted twice"),
        ("id,score\n,3\n", "p.csv:2: empty id"),
        ("id,score\n{first},3\n", "samples have no prediction"),
        ("id,score\n", "no predictions"),
    ],
)
def test_bad_predictions_are_one_message_naming_what_and_where(
    demo_root: Path,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
    body: str,
    message: str,
) -> None:
    first = _split(demo_root, "harmony")[0][0]
    (tmp_path / "p.csv").write_text(body.format(first=first))
    assert _evaluate(demo_root, "harmony", tmp_path / "p.csv", tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(first=first) in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_missing_ids_are_counted_and_named(demo_root: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    test = _split(demo_root, "naturalness")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": i, "score": 3}) + "\n" for i, _ in test[2:]))
    assert _evaluate(demo_root, "naturalness", tmp_path / "p.jsonl", tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert f"2 of the {len(test)} naturalness test samples have no prediction: '{test[0][0]}', '{test[1][0]}'" in err
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    assert _evaluate(demo_root, "naturalness", tmp_path / "bad.jsonl", tmp_path / "run") == 1
    assert "bad.jsonl:1: needs a 'score' (or 'pred') field" in capsys.readouterr().err


def test_the_qalign_script_scores_the_paper_views_and_feeds_evaluate(demo_root: Path, tmp_path: Path) -> None:
    """scripts/qalign_predictions.py (run in Q-Align's own environment), with a stand-in metric instead of pyiqa's."""
    import csv
    import importlib.util

    import numpy as np

    from epaiqa.data.crops import crop_region
    from epaiqa.data.images import load_rgb

    path = Path(__file__).resolve().parents[1] / "scripts" / "qalign_predictions.py"
    spec = importlib.util.spec_from_file_location("qalign_predictions", path)
    script = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    samples = {s.id: s for s in load_manifest(demo_root)}
    for task in ("naturalness", "harmony"):
        seen = dict(script.predictions(demo_root, task, "test", lambda image: image.width * 1000 + image.height))
        assert list(seen) == [i for i, _ in _split(demo_root, task)]
        for sample_id, size in seen.items():
            image = load_rgb(demo_root / samples[sample_id].edited)
            expected = crop_region(image, samples[sample_id].bbox) if task == "naturalness" else image
            assert size == expected.width * 1000 + expected.height  # the project's own view of the sample
    brightness = dict(script.predictions(demo_root, "harmony", "test", lambda image: np.asarray(image).mean()))
    with (tmp_path / "q.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("id", "score"), *brightness.items()])
    assert _evaluate(demo_root, "harmony", tmp_path / "q.csv", tmp_path / "run", "brightness") == 0
    assert read_record(tmp_path / "run").n == len(brightness)
