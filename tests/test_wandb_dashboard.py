"""W&B comparison keys: a two-model sweep's offline run files read back; ``epaiqa dashboard`` built offline."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CONF, EXPERIMENTS, make_cfg
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from epaiqa.cli import main
from epaiqa.dashboard import (
    OfflineRun,
    build_report,
    build_workspace,
    dashboard_spec,
    find_offline_runs,
    read_offline_run,
    wandb_records,
)
from epaiqa.data.schema import EDIT_TYPES
from epaiqa.errors import DataError
from epaiqa.records.results import read_record
from epaiqa.runs import register_resolvers
from epaiqa.train import train
from epaiqa.wandb_logging import CONFIG_KEYS, PREDICTION_COLUMNS, PREDICTIONS_KEY, model_family, with_comparison_keys

BASELINES = ("wadiqam_nr", "nima")
SWEEP = "2026-01-02_03-04-05_123-abcd"
WORST_K = 3
N_TEST = 12
COLUMNS = (*EDIT_TYPES, "all")
METRICS = ("srcc", "plcc", "krcc", "rmse", "n")
SMALL = [
    "experiment=baseline_harmony",
    "data.image_size=64",
    "data.batch_size=4",
    f"data.limit_test={N_TEST}",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.accelerator=cpu",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "eval_untrained=false",
    "eval_train=false",
    f"logger.wandb.worst_k={WORST_K}",
]


def sweep_job(sweep: Path, num: int, root: Path, overrides: list[str]) -> DictConfig:
    """A job's config as Hydra's launcher hands it over in a multirun (HydraConfig set, the hydra node removed)."""
    register_resolvers()
    job = [*overrides, f"data.root={root}", f"hydra.sweep.dir={sweep}", "hydra.mode=MULTIRUN", f"hydra.job.num={num}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=job, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = str(sweep / str(num))
    return cfg


@pytest.fixture(scope="module")
def wandb_sweep(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two baselines trained as the jobs of one multirun, each logging to W&B offline."""
    sweep = tmp_path_factory.mktemp("wandb") / "multirun" / SWEEP
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_DATA_DIR", str(sweep.parent / "wandb-data"))  # W&B stages logged tables here
        mp.setenv("WANDB_MODE", "offline")
        try:
            for num, name in enumerate(BASELINES):
                train(sweep_job(sweep, num, demo_root, [*SMALL, f"baseline={name}"]))
        finally:
            HydraConfig.instance().cfg = None  # type: ignore[assignment]
    yield sweep


@pytest.fixture(scope="module")
def runs(wandb_sweep: Path) -> dict[str, OfflineRun]:
    found = find_offline_runs([wandb_sweep])
    return {run.job_type: run for run in found}


def test_each_job_wrote_one_wandb_run_named_by_sweep_and_family(runs: dict[str, OfflineRun]) -> None:
    assert sorted(runs) == sorted(BASELINES)
    for family, run in runs.items():
        assert run.project == "epaiqa" and run.name == f"harmony_{family}"
        assert run.group == SWEEP, "the jobs of a multirun share the sweep as their W&B group"
        assert run.config["family"] == family and run.config["sweep"] == SWEEP


def test_the_flat_config_has_the_same_keys_for_both_models(runs: dict[str, OfflineRun], wandb_sweep: Path) -> None:
    for num, (family, run) in enumerate(sorted(runs.items(), key=lambda kv: BASELINES.index(kv[0]))):
        record = read_record(wandb_sweep / str(num))
        assert set(CONFIG_KEYS) <= set(run.config), f"{family}: missing {set(CONFIG_KEYS) - set(run.config)}"
        assert run.config["model"] == record.model == family
        assert run.config["setting"] == record.setting.key and run.config["split_seed"] == record.split_seed
        assert (run.config["task"], run.config["view"], run.config["image_size"]) == ("harmony", "whole", 64)
        assert run.config["hparams"]["baseline"] == family, "Lightning's hyper-parameters go under hparams"
    a, b = (runs[name].config for name in BASELINES)
    assert a["lr"] != b["lr"] and a["loss"] != b["loss"], "the two baselines' own settings"


def test_the_summary_has_every_edit_type_under_the_same_names(runs: dict[str, OfflineRun], wandb_sweep: Path) -> None:
    expected = {f"test/harmony/{column}/{metric}" for column in COLUMNS for metric in METRICS}
    comparison = [
        {k for k in run.summary if k.startswith("test/harmony/") and k.count("/") == 3} for run in runs.values()
    ]
    assert comparison[0] == comparison[1] and expected <= comparison[0]
    for num, name in enumerate(BASELINES):
        record, summary = read_record(wandb_sweep / str(num)), runs[name].summary
        for column in COLUMNS:
            for metric in METRICS:
                logged, saved = summary[f"test/harmony/{column}/{metric}"], record.test[column][metric]
                assert logged == saved or (saved is not None and math.isclose(logged, saved, rel_tol=1e-9))
        assert summary["test/harmony/all/n"] == N_TEST


def test_the_predictions_table_has_thumbnails_of_the_worst_k(runs: dict[str, OfflineRun], wandb_sweep: Path) -> None:
    for num, name in enumerate(BASELINES):
        run = runs[name]
        assert run.summary[PREDICTIONS_KEY]["_type"] == "table-file"
        table = run.table(PREDICTIONS_KEY)
        assert table is not None, "the predictions table was not staged for upload"
        assert table["columns"] == list(PREDICTION_COLUMNS)
        with (wandb_sweep / str(num) / "predictions.csv").open() as fh:
            ids = {row["id"] for row in csv.DictReader(fh)}
        rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
        assert {r["id"] for r in rows} == ids and len(rows) == N_TEST
        errors = [r["abs_error"] for r in rows]
        assert errors == sorted(errors, reverse=True) and all(
            math.isclose(r["abs_error"], abs(r["pred"] - r["mos"])) for r in rows
        )
        images = [r["thumbnail"] for r in rows]
        assert all(isinstance(i, dict) and i["_type"] == "image-file" and i["height"] == 96 for i in images[:WORST_K])
        assert images[WORST_K:] == [None] * (N_TEST - WORST_K)
        assert run.images(PREDICTIONS_KEY) == WORST_K


def test_dashboard_builds_the_workspace_and_report_offline(
    wandb_sweep: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")  # wandb.init of earlier tests may leave its own spelling, dryrun
    out = tmp_path / "dashboard.json"
    assert main(["dashboard", "--project", "epaiqa", "--dirs", str(wandb_sweep), "--out", str(out)]) == 0
    assert "not saved to W&B (WANDB_MODE=offline)" in capsys.readouterr().out
    spec = json.loads(out.read_text())
    workspace = spec["workspace"]
    assert workspace["project"] == "epaiqa"
    sections = {s["name"]: s["panels"] for s in workspace["spec"]["section"]["panelBankConfig"]["sections"]}
    assert list(sections)[:3] == ["Table 1 · harmony", "Sweep", "Predictions"]
    table1 = sections["Table 1 · harmony"]
    assert table1[0]["viewType"] == "Run Comparer"
    bars = [p["config"]["metrics"] for p in table1 if p["viewType"] == "Bar Chart"]
    assert bars == [
        [f"summary_metrics.test/harmony/{c}/srcc", f"summary_metrics.test/harmony/{c}/plcc"] for c in COLUMNS
    ]
    parallel = next(p for p in sections["Sweep"] if p["viewType"] == "Parallel Coordinates Plot")
    axes = [c["accessor"] for c in parallel["config"]["columns"]]
    assert {"config:family.value", "config:lr.value", "config:loss.value"} <= set(axes)
    assert axes[-1] == "summary:test/harmony/all/srcc"
    assert "config:model.value" not in axes and "config:setting.value" not in axes  # identifiers, not parameters
    assert SWEEP in json.dumps(workspace["spec"]["section"]["runSets"]), "the runs shown: the sweep's group"
    blocks = spec["report"]["spec"]["blocks"]
    grids = [b for b in blocks if b["type"] == "panel-grid"]
    assert len(grids) == 3  # Table 1, the sweep, the logged tables
    assert "test/harmony/all/n" in json.dumps(grids[0]["metadata"]["runSets"][0]["filters"]), (
        "the runs that scored harmony"
    )


def test_table_3_reads_the_prompt_completion_3_subset() -> None:
    summary = {
        "test/overall/all/n": 9,
        "test/overall_completion3/all/n": 5,
        "test/explanations": {"_type": "table-file"},
    }
    stage3 = OfflineRun(Path("run.wandb"), group="stage3_explain", config={"family": "epaiqa_stage3"}, summary=summary)
    spec = dashboard_spec(build_workspace("p", "e", [stage3]), build_report("p", "e", [stage3]))
    sections = {s["name"]: s["panels"] for s in spec["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]}
    assert "Table 1 · harmony" not in sections
    bars = [p["config"]["metrics"][0] for p in sections["Table 3 · overall (prompt completion 3)"][1:]]
    assert bars == [f"summary_metrics.test/overall_completion3/{c}/srcc" for c in COLUMNS]
    assert [p["config"]["panel2Config"]["exp"]["fromOp"]["inputs"]["key"]["val"] for p in sections["Predictions"]] == [
        PREDICTIONS_KEY,
        "test/explanations",
    ]
    parallel = next(p for p in sections["Sweep"] if p["viewType"] == "Parallel Coordinates Plot")
    axes = [c["accessor"] for c in parallel["config"]["columns"]]
    assert axes[:2] == ["config:family.value", "config:lr.value"]  # nothing varies: the default axes


def test_dashboard_bad_input_is_one_line(wandb_sweep: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--project", "other", "--dirs", str(wandb_sweep)], "no W&B runs of project other"),
        (["--project", "epaiqa", "--dirs", str(tmp_path / "nope")], "no such folder"),
        (["--project", "epaiqa", "--dirs", str(empty)], "no W&B runs of project epaiqa under"),
    ]
    for args, message in cases:
        assert main(["dashboard", *args, "--out", str(tmp_path / "x.json")]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


def test_the_reader_checks_the_run_file(runs: dict[str, OfflineRun], tmp_path: Path) -> None:
    path = runs[BASELINES[0]].path
    assert sum(1 for _ in wandb_records(path)) > 5
    corrupt = tmp_path / "run-x.wandb"
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt W&B record"):
        read_offline_run(corrupt)
    (tmp_path / "other.wandb").write_text("not a run")
    with pytest.raises(DataError, match="not a W&B run file"):
        read_offline_run(tmp_path / "other.wandb")


def test_outside_a_sweep_the_group_is_the_task(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=baseline_naturalness", "baseline=topiq_nr", "logger=default"])
    node = with_comparison_keys(cfg, cfg.logger.wandb)
    assert (node.group, node.job_type, node.config.family) == ("naturalness", "topiq_nr", "topiq_nr")
    assert node.config.sweep is None and node.config.task == "naturalness"
    assert with_comparison_keys(cfg, cfg.logger.csv) is cfg.logger.csv


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_logs_the_same_flat_keys(tmp_path: Path, experiment: str) -> None:
    cfg = make_cfg(tmp_path, tmp_path, [f"experiment={experiment}", "logger=default"])
    config = with_comparison_keys(cfg, cfg.logger.wandb).config
    assert set(config) == set(CONFIG_KEYS)
    assert all(v is None or isinstance(v, bool | int | float | str) for v in config.values())
    expected = {"stage1_grounding": "epaiqa_stage1", "stage3_explain": "epaiqa_stage3", "qalign": "qalign_stage2"}
    expected |= {"stage2_harmony": "epaiqa_stage2", "zeroshot": "epaiqa_stage2", "best_competitor": "best_competitor"}
    expected |= {"demo": "stair_iqa", "baseline_harmony": "topiq_nr"}
    if experiment in expected:
        assert model_family(cfg) == expected[experiment] == config["family"]
    tasks = {"stage1_grounding": "grounding", "stage3_explain": "completion+overall", "qalign": "harmony+naturalness"}
    tasks |= {"baseline_naturalness": "naturalness", "stage2_harmony": "harmony"}
    if experiment in tasks:
        assert config["task"] == tasks[experiment]
