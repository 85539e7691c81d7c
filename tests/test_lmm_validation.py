"""The LMM stages' validation split (settings are chosen on it) and their learning-rate schedule."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import make_cfg
from omegaconf import open_dict

from epaiqa.data.manifest import load_manifest
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError
from epaiqa.lmm.data import LMMDataModule
from epaiqa.models.lmm_module import EPAIQAScoring
from epaiqa.precision import choose_precision


def ids(datamodule: LMMDataModule, part: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for sample, task in datamodule.datasets[part].pairs:
        out.setdefault(task, set()).add(sample.id)
    return out


@pytest.mark.parametrize(
    ("stage", "tasks"), [("scoring", ["harmony", "naturalness"]), ("grounding", None), ("explain", None)]
)
def test_validation_is_carved_from_training_by_source_image(demo_root: Path, stage: str, tasks: list | None) -> None:
    datamodule = LMMDataModule(root=str(demo_root), stage=stage, tasks=tasks, val_fraction=0.25)
    datamodule.setup("fit")
    samples = {s.id: s for s in load_manifest(demo_root)}
    subsets = load_splits(demo_root, list(samples.values()))
    all_test = set().union(*(set(p["test"]) for p in subsets.values()))
    train, val, test = (ids(datamodule, part) for part in ("train", "val", "test"))
    assert val and set(val) == set(train)
    for task in train:
        assert val[task] and not train[task] & val[task]
        assert not (train[task] | val[task]) & all_test  # validation never meets any subset's test split
        sources = {samples[i].source for i in train[task]}
        assert not sources & {samples[i].source for i in val[task]}  # whole source images on one side
        if task != "grounding":
            assert test[task] == set(subsets[task]["test"])
    if stage == "scoring":  # the baselines' split: the same ids would be held out for validation
        assert train["harmony"] | val["harmony"] == set(subsets["harmony"]["train"])


def test_no_validation_split_and_bad_fractions(demo_root: Path) -> None:
    datamodule = LMMDataModule(root=str(demo_root), tasks=["harmony"], val_fraction=0)
    datamodule.setup("fit")
    assert "val" not in datamodule.datasets and datamodule.val_dataloader() == []
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        LMMDataModule(root=str(demo_root), val_fraction=1.0)
    with pytest.raises(ConfigError, match=r"data\.limit_val"):
        LMMDataModule(root=str(demo_root), limit_val=-1)


def test_a_stage_run_records_its_validation_metrics(demo_root: Path, tmp_path: Path) -> None:
    from epaiqa.records.results import read_record
    from epaiqa.train import train

    overrides = [
        "experiment=stage2_harmony",
        "trainer.limit_train_batches=1",
        "data.limit_test=4",
        "eval_untrained=false",
    ]
    cfg = make_cfg(demo_root, tmp_path, overrides)
    with open_dict(cfg):
        cfg.trainer.precision = "auto"  # the experiments' setting: decided for this CPU, recorded
    train(cfg)
    record = read_record(tmp_path)
    assert record.val is not None and record.val["all"]["n"] == 4  # make_cfg's data.limit_val
    assert record.precision == choose_precision("auto", "cpu")
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/harmony/srcc" in header


def test_cosine_schedule_warms_up_then_decays(demo_root: Path, tmp_path: Path) -> None:
    module = EPAIQAScoring(lr=1e-3, lr_schedule="cosine", warmup_ratio=0.1)
    module._trainer = SimpleNamespace(estimated_stepping_batches=100)  # what configure_optimizers reads
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == 0.0 and rates[10] == pytest.approx(1e-3) and rates[5] == pytest.approx(5e-4)
    assert rates[55] < rates[30] < rates[10] and rates[-1] < 1e-5
    constant = EPAIQAScoring(lr=1e-3)
    assert constant.configure_optimizers().param_groups[0]["lr"] == 1e-3
    with pytest.raises(ConfigError, match=r"model\.lr_schedule"):
        EPAIQAScoring(lr_schedule="linear")
    with pytest.raises(ConfigError, match=r"model\.warmup_ratio"):
        EPAIQAScoring(warmup_ratio=1.5)


def test_stage2_with_cot_uses_the_prior_where_it_exists_and_counts_the_rest(
    demo_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from epaiqa.data.schema import has_cot

    manifest = demo_copy / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    stripped = set()
    for row in lines:
        if row.get("cot", {}).get("harmony") and len(stripped) < 6:
            row["cot"]["harmony"] = ""  # real data: a sample the CoT engine has not annotated
            stripped.add(row["id"])
    manifest.write_text("".join(json.dumps(row) + "\n" for row in lines))
    with caplog.at_level("WARNING", logger="epaiqa.lmm.data"):
        datamodule = LMMDataModule(root=str(demo_copy), tasks=["harmony"], with_cot=True, val_fraction=0)
        datamodule.setup("fit")
    train = datamodule.datasets["train"]
    missing = [k for k, (s, _) in enumerate(train.pairs) if not has_cot(s, "harmony")]
    having = [k for k, (s, _) in enumerate(train.pairs) if has_cot(s, "harmony")]
    assert missing and having and {train.pairs[k][0].id for k in missing} <= stripped
    assert f"{len(missing)} of {len(train.pairs)} harmony training samples have no cot.harmony" in caplog.text
    prior = train.pairs[having[0]][0].cot["harmony"].strip()[:30]
    assert prior in json.dumps(train[having[0]]["conversation"][0])  # E.2's [CoT] where the sample has one
    question = json.dumps(train[missing[0]]["conversation"][0])  # built, without a prior, no failure
    assert "harmony level" in question.lower()
    test = datamodule.datasets["test"]
    for k, (sample, _) in enumerate(test.pairs[:5]):  # never in a test question
        if has_cot(sample, "harmony"):
            assert sample.cot["harmony"].strip()[:30] not in json.dumps(test[k]["conversation"][0])
