"""Table 3's best competitors (picks by training-set SRCC, cross-validated fit, end-to-end run) and run scorers."""

import csv
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from helpers import make_cfg

from epaiqa.cli import main
from epaiqa.competitor import fit_regressor, pick_runs
from epaiqa.data.manifest import load_manifest
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError, DataError
from epaiqa.jobs import run_job
from epaiqa.records.results import COMPLETION3, RunRecord, read_record, write_record
from epaiqa.scoring.load import load_scorer


def _record(folder: Path, task: str, model: str, train_srcc: float | None, reference: bool, fp: str = "fp") -> None:
    table = {"all": {"srcc": 0.1, "plcc": 0.1, "n": 10}}
    record = RunRecord(
        task=task,
        model=model,
        kind="trained",
        test=table,
        n=10,
        train=None if train_srcc is None else {"all": {"srcc": train_srcc, "plcc": 0.0, "n": 10}},
        data={"reference": reference},
        data_fingerprint=fp,
    )
    write_record(folder, record)


def test_picks_are_the_highest_training_srcc_of_each_sub_score_among_nr_or_fr(tmp_path: Path) -> None:
    _record(tmp_path / "a", "harmony", "nr_low", 0.3, False)
    _record(tmp_path / "b", "harmony", "nr_high", 0.6, False)
    _record(tmp_path / "c", "harmony", "fr_best", 0.9, True)
    _record(tmp_path / "d", "harmony", "other_data", 0.99, False, fp="other")
    _record(tmp_path / "e", "harmony", "no_train_metrics", None, False)
    _record(tmp_path / "f", "naturalness", "nr_nat", 0.4, False)
    _record(tmp_path / "g", "naturalness", "fr_nat", 0.2, True)
    nr = pick_runs([tmp_path], "nr", fingerprint="fp")
    assert (nr["harmony"].model, nr["harmony"].train_srcc, nr["harmony"].candidates) == ("nr_high", 0.6, 2)
    assert nr["naturalness"].model == "nr_nat" and nr["harmony"].run == str(tmp_path / "b")
    fr = pick_runs([tmp_path], "fr", fingerprint="fp")
    assert (fr["harmony"].model, fr["naturalness"].model) == ("fr_best", "fr_nat")


def test_a_sub_score_without_candidates_is_named(tmp_path: Path) -> None:
    _record(tmp_path / "a", "harmony", "nr", 0.3, False)
    with pytest.raises(ConfigError, match="no trained NR run of naturalness"):
        pick_runs([tmp_path], "nr")
    with pytest.raises(ConfigError, match=r"competitor\.mode"):
        pick_runs([tmp_path], "both")
    with pytest.raises(ConfigError, match="not found"):
        pick_runs([tmp_path / "missing"], "nr")


def test_the_cross_validated_forest_learns_a_rule_of_the_sub_scores() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 5, size=(120, 2))
    y = 0.6 * x[:, 0] + 0.4 * x[:, 1] ** 2 / 5 + rng.normal(0, 0.05, 120)
    groups = [f"src{i // 3}" for i in range(120)]
    grid = {"n_estimators": [50], "max_depth": [2, None]}
    fit = fit_regressor(x, y, groups, "random_forest", grid, folds=4, seed=0)
    assert fit.params["max_depth"] is None and fit.folds == 4 and fit.oof.shape == (120,)
    assert np.corrcoef(fit.oof, y)[0, 1] > 0.95  # out-of-fold, not in-sample
    svr = fit_regressor(x, y, groups, "svr", {"C": [1.0, 10.0]}, folds=4, seed=0)
    assert np.corrcoef(svr.oof, y)[0, 1] > 0.95 and set(svr.params) == {"C"}
    with pytest.raises(ConfigError, match=r"competitor\.grid\.random_forest"):
        fit_regressor(x, y, groups, "random_forest", {"no_such_param": [1]}, folds=4, seed=0)
    with pytest.raises(ConfigError, match="too few"):
        fit_regressor(x, y, ["one"] * 120, "random_forest", grid, folds=4, seed=0)


def test_best_competitor_runs_from_sweep_folders(demo_root: Path, baseline_sweep: Path, tmp_path: Path) -> None:
    comp = ["experiment=best_competitor", f"competitor.runs=[{baseline_sweep}]"]
    grid = "competitor.grid.random_forest={n_estimators:[20],max_depth:[2,null]}"
    (record,) = run_job(make_cfg(demo_root, tmp_path / "comp", [*comp, grid])).values()
    assert record.kind == "regressor" and record.task == "overall" and record.model.startswith("best_competitor_nr(")
    picks = record.data["picks"]
    assert {picks[t]["run"] for t in picks} == {str(baseline_sweep / t) for t in ("harmony", "naturalness")}
    assert picks["harmony"]["train_srcc"] == read_record(baseline_sweep / "harmony").train["all"]["srcc"]
    sub = record.subsets[COMPLETION3]["test"]
    assert 0 < sub["all"]["n"] < record.n and record.train["all"]["n"] > record.n
    assert read_record(tmp_path / "comp") == record
    rows = (tmp_path / "comp" / "predictions.csv").read_text().splitlines()
    assert rows[0].split(",")[-2:] == ["harmony_pred", "naturalness_pred"] and len(rows) == record.n + 1
    forest = joblib.load(tmp_path / "comp" / "regressor.joblib")
    first = rows[1].split(",")
    assert forest.predict([[float(first[-2]), float(first[-1])]])[0] == pytest.approx(float(first[4]))
    # the run scores like it tested: a batch of its test samples, and one pair with its bbox given
    scorer = load_scorer(tmp_path / "comp")
    by_id = {s.id: s for s in load_manifest(demo_root)}
    table = list(csv.DictReader((tmp_path / "comp" / "predictions.csv").open()))[:3]
    got = scorer.manifest_rows(demo_root, [by_id[r["id"]] for r in table])
    assert [g["score"] for g in got] == pytest.approx([float(r["pred"]) for r in table], abs=1e-5)
    one = by_id[table[0]["id"]]
    pair = scorer(demo_root / one.source, demo_root / one.edited, one.prompt, one.bbox)
    assert pair["overall"]["score"] == pytest.approx(float(table[0]["pred"]), abs=1e-5)
    assert pair["harmony"]["score"] == pytest.approx(float(table[0]["harmony_pred"]), abs=1e-5)
    with pytest.raises(ConfigError, match="no trained FR run"):
        run_job(make_cfg(demo_root, tmp_path / "fr", [*comp, "competitor.mode=fr"]))


def test_the_regressor_fits_on_all_training_samples_or_completion_3_only(
    demo_root: Path, baseline_sweep: Path, tmp_path: Path
) -> None:
    comp = ["experiment=best_competitor", f"competitor.runs=[{baseline_sweep}]", "competitor.cv_folds=2"]
    comp += ["competitor.grid.random_forest={n_estimators:[10]}"]
    (every,) = run_job(make_cfg(demo_root, tmp_path / "all", comp)).values()
    (third,) = run_job(make_cfg(demo_root, tmp_path / "c3", [*comp, "competitor.fit_on=completion3"])).values()
    assert every.data["fit_on"] == "all" and third.data["fit_on"] == "completion3"
    assert every.data["n_fit"] == every.train["all"]["n"] > third.data["n_fit"] == third.train["all"]["n"] > 0
    assert third.train["all"]["n"] == third.subsets[COMPLETION3]["train"]["all"]["n"]  # every fitted sample is one
    assert third.n == every.n  # tested on the same split
    with pytest.raises(ConfigError, match=r"competitor\.fit_on must be one of all, completion3"):
        run_job(make_cfg(demo_root, tmp_path / "bad", [*comp, "competitor.fit_on=some"]))


def test_a_loaded_run_predicts_what_the_run_tested(demo_root: Path, baseline_sweep: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(baseline_sweep / "naturalness", tmp_path / "run"))  # moved: the checkpoint is found
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    by_id = {s.id: s for s in load_manifest(demo_root)}
    for path in (run, run / "checkpoints" / Path(read_record(run).checkpoint).name):
        scorer = load_scorer(path)
        pred = scorer.predict(demo_root, [by_id[r["id"]] for r in rows], "naturalness", batch_size=3)
        assert [pred[r["id"]] for r in rows] == pytest.approx([float(r["pred"]) for r in rows], abs=1e-5)
    with pytest.raises(DataError, match="not a run folder"):
        load_scorer(tmp_path / "nowhere")
    (run / "config.yaml").write_text("model:\n  _target_: some.other.Model\n")
    with pytest.raises(ConfigError, match=r"some\.other\.Model, which cannot score here"):
        load_scorer(run)


def test_without_runs_the_candidates_are_trained_first_and_kept_on_rerun(demo_root: Path, tmp_path: Path) -> None:
    fast = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "eval_untrained=false", "data.image_size=64"]
    fast = "[" + ",".join(f"'{o}'" for o in [*fast, "logger=csv"]) + "]"  # quoted: Hydra's list of overrides
    overrides = ["experiment=best_competitor", "competitor.candidates.nr=[wadiqam_nr]"]
    overrides += [f"competitor.candidate_overrides={fast}", "competitor.grid.random_forest={n_estimators:[10]}"]
    (record,) = run_job(make_cfg(demo_root, tmp_path, overrides)).values()
    runs = {t: Path(p["run"]) for t, p in record.data["picks"].items()}
    assert runs == {t: tmp_path / "candidates" / f"{t}_wadiqam_nr" for t in ("harmony", "naturalness")}
    trained = read_record(runs["harmony"])
    assert trained.model == "wadiqam_nr" and "baseline=wadiqam_nr" in trained.setting.overrides
    assert trained.data_fingerprint == record.data_fingerprint and trained.seed == record.seed
    stamp = (runs["harmony"] / "results.json").stat().st_mtime_ns
    (again,) = run_job(make_cfg(demo_root, tmp_path, overrides)).values()
    assert (runs["harmony"] / "results.json").stat().st_mtime_ns == stamp and again.test == record.test


def test_imported_predictions_of_the_training_split_can_be_picked(
    demo_root: Path, baseline_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    samples = load_manifest(demo_root)
    rng = np.random.default_rng(0)
    rows = ["id,score"] + [f"{s.id},{s.score('harmony') + rng.normal(0, 0.1):.4f}" for s in samples]
    (tmp_path / "zeroshot.csv").write_text("\n".join(rows) + "\n")  # a zero-shot model predicting every sample
    imported = tmp_path / "imported" / "harmony_qalign"
    argv = ["evaluate", "--root", str(demo_root), "--task", "harmony", "--predictions", str(tmp_path / "zeroshot.csv")]
    assert main([*argv, "--name", "qalign_zeroshot", "--out", str(imported)]) == 0
    assert "best-competitor candidate" in capsys.readouterr().out
    record = read_record(imported)
    assert record.kind == "imported" and record.train["all"]["srcc"] > 0.9  # the training split, scored
    runs = f"competitor.runs=[{baseline_sweep},{tmp_path / 'imported'}]"
    comp = [
        "experiment=best_competitor",
        runs,
        "competitor.cv_folds=2",
        "competitor.grid.random_forest={n_estimators:[10]}",
    ]
    (best,) = run_job(make_cfg(demo_root, tmp_path / "comp", comp)).values()
    assert best.data["picks"]["harmony"]["run"] == str(imported)  # the highest training-set SRCC
    assert best.data["picks"]["naturalness"]["run"] == str(baseline_sweep / "naturalness")
    features = list(csv.DictReader((tmp_path / "comp" / "predictions.csv").open()))
    by_id = {s.id: s for s in samples}
    assert all(abs(float(r["harmony_pred"]) - by_id[r["id"]].score("harmony")) < 0.6 for r in features)
    with pytest.raises(DataError, match="holds imported predictions, not a model"):
        load_scorer(tmp_path / "comp")  # it scored its dataset; it has no model for new images
    test_ids = load_splits(demo_root, samples)["harmony"]["test"]
    only = "".join(f"{i},{by_id[i].score('harmony')}\n" for i in test_ids)
    (tmp_path / "test_only.csv").write_text("id,score\n" + only)  # the test split only: not a candidate
    argv[-1] = str(tmp_path / "test_only.csv")
    assert main([*argv, "--name", "test_only", "--out", str(tmp_path / "only" / "h")]) == 0
    assert read_record(tmp_path / "only" / "h").train is None
