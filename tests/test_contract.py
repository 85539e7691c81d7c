"""One task contract: metric names, results records, stage checks, profiles, E.2's [CoT] kept out of tests."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import EXPERIMENTS, make_cfg
from omegaconf import OmegaConf

from epaiqa.baselines import create_baseline
from epaiqa.data.base import EpochSampler, check_stage
from epaiqa.errors import ConfigError
from epaiqa.lmm.data import LMMDataModule
from epaiqa.models.iqa_module import regression_loss
from epaiqa.records.results import COMPLETION3
from epaiqa.runs import record_model_name
from epaiqa.train import train

REPO = Path(__file__).resolve().parents[1]


def test_baseline_on_the_overall_task_also_scores_completion_3_apart(demo_root: Path, tmp_path: Path) -> None:
    one = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    cfg = make_cfg(demo_root, tmp_path, ["data=overall", "baseline=wadiqam_nr", *one])
    (record,) = train(cfg).values()
    assert record.task == "overall" and record.kind == "trained"
    sub = record.subsets[COMPLETION3]["test"]
    assert 0 < sub["all"]["n"] <= record.test["all"]["n"]
    assert record.train is not None and record.data_fingerprint and record.git_commit
    csv = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "test/overall/srcc" in csv and "test/overall_completion3/srcc" in csv and "train/overall/srcc" in csv


def test_metric_names_are_split_task_metric(demo_root: Path, tmp_path: Path) -> None:
    one = ["trainer.limit_train_batches=1", "data.limit_test=4", "data.limit_train_eval=4"]
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_mixed", *one])
    records = train(cfg)
    assert set(records) == {"harmony", "naturalness"}
    assert all(r.model == "epaiqa_tiny_wo_stage1" for r in records.values())  # no stage-1 ancestor
    assert all(r.lineage == ["scoring"] and r.untrained is not None for r in records.values())
    head = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("test/harmony/srcc", "test/naturalness/plcc", "untrained/harmony/srcc", "train/naturalness/srcc"):
        assert name in head


def test_zero_shot_backbone_is_named_for_what_it_is(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=zeroshot", "debug=fdr"])
    records = train(cfg)
    assert {r.model for r in records.values()} == {"zeroshot_tiny"}
    assert {r.kind for r in records.values()} == {"zero-shot"} and all(r.train is None for r in records.values())


def test_row_names_follow_the_chain_that_made_the_weights() -> None:
    assert record_model_name("epaiqa_tiny", "scoring", ["grounding", "scoring"]) == "epaiqa_tiny"
    assert record_model_name("epaiqa_tiny", "scoring", ["scoring"]) == "epaiqa_tiny_wo_stage1"
    assert record_model_name("epaiqa_tiny_reference", "explain", ["scoring", "explain"]) == "epaiqa_tiny_reference"
    assert record_model_name("dbcnn", None, []) == "dbcnn"
    assert record_model_name("zeroshot_tiny", "scoring", []) == "zeroshot_tiny"  # scored as loaded
    assert record_model_name("qalign_tiny", "scoring", ["scoring"]) == "qalign_tiny"  # no stage 1 to miss


def test_data_and_model_of_different_stages_are_refused(demo_root: Path) -> None:
    data = LMMDataModule(root=str(demo_root), stage="grounding")

    class Scoring:
        STAGE = "scoring"

    with pytest.raises(ConfigError, match="data are for stage grounding but the model is stage scoring"):
        check_stage(data, Scoring())
    check_stage(LMMDataModule(root=str(demo_root), stage="scoring"), Scoring())


def test_e2_cot_is_a_training_prior_never_a_test_input(demo_root: Path) -> None:
    data = LMMDataModule(root=str(demo_root), tasks=["harmony"], with_cot=True)
    data.setup()

    def question(item: dict) -> str:
        return " ".join(p.get("text", "") for p in item["conversation"][0]["content"])

    train_item, test_item = data.datasets["train"][0], data.datasets["test"][0]
    assert train_item["sample"].cot["harmony"].strip()[:30] in question(train_item)
    assert test_item["sample"].cot["harmony"].strip()[:30] not in question(test_item)
    batch = next(iter(data.test_dataloader()))
    assert set(batch) == {
        "samples",
        "tasks",
        "conversations",
        "images",
        "templates",
        "levels",
    }  # no dataset root in batches


def test_joint_trains_each_branch_on_the_label() -> None:
    model = create_baseline("joint", input_size=64, patch_size=16, swin_embed_dim=32, swin_depths=[1, 1, 1, 1],
                            resnet_depth=18)  # fmt: skip
    img, target = torch.rand(2, 3, 64, 64), torch.rand(2)
    model.eval()  # fixed patch shuffling: both calls see the same inputs
    loss = model.training_loss(img, None, target, lambda p, t: regression_loss("mse", p, t))
    scores = model.net.branch_scores(img)
    expected = sum(regression_loss("mse", scores[:, i], target) for i in range(2))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    plain = create_baseline("wadiqam_nr").eval()
    x = torch.rand(2, 3, 64, 64)
    assert plain.training_loss(x, None, target, torch.nn.functional.l1_loss).item() == pytest.approx(
        torch.nn.functional.l1_loss(plain(x), target).item(), rel=1e-5
    )


def test_epoch_sampler_order_depends_on_seed_and_epoch_only() -> None:
    a, b = EpochSampler(20, seed=1), EpochSampler(20, seed=1)
    b.set_epoch(1)
    first = list(a)
    assert sorted(k.index for k in first) == list(range(20))
    assert first == list(EpochSampler(20, seed=1)) and first != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_one_override_limits_batches_in_every_experiment(tmp_path: Path, experiment: str) -> None:
    cfg = make_cfg(tmp_path, tmp_path, [f"experiment={experiment}", "trainer.limit_train_batches=3"])
    assert cfg.trainer.limit_train_batches == 3


def test_profile_paper_lifts_the_caps_and_takes_each_models_own_setting(tmp_path: Path) -> None:
    demo = make_cfg(tmp_path, tmp_path, ["experiment=stage2_harmony"], small=False)
    paper = make_cfg(tmp_path, tmp_path, ["experiment=stage2_harmony", "profile=paper",
                                          "model/backbone=llava_onevision_7b"], small=False)  # fmt: skip
    assert demo.trainer.limit_train_batches == 200 and demo.data.limit_test == 200 and demo.model.lr == 1e-4
    assert paper.trainer.limit_train_batches is None and paper.data.limit_test is None and paper.model.lr == 1e-5
    base = make_cfg(
        tmp_path, tmp_path, ["experiment=baseline_harmony", "baseline=topiq_nr", "profile=paper"], small=False
    )
    OmegaConf.resolve(base)
    assert base.data.image_size == 384 and base.model.lr == 3e-5 and base.trainer.max_epochs == 200
    assert base.model.baseline_kwargs == {} and base.data.view == "whole"
    assert "baseline" not in demo  # LMM experiments carry no baseline settings


def test_real_backbone_under_the_demo_caps_must_be_asked_for(tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "run.py", "experiment=stage2_harmony", "model/backbone=llava_onevision_7b", "logger=csv",
            f"hydra.run.dir={tmp_path / 'o'}", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    refused = subprocess.run(base, cwd=REPO, capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "pass profile=paper" in refused.stderr
    explicit = subprocess.run([*base, "profile=paper", "data.root=/nonexistent"], cwd=REPO, capture_output=True,
                              text=True, env=env)  # fmt: skip
    assert explicit.returncode == 1 and "profile=paper" not in explicit.stderr
    assert "/nonexistent" in explicit.stderr and "dataset root" in explicit.stderr
