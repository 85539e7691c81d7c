from pathlib import Path

import pytest
from helpers import CONF, EXPERIMENTS, make_cfg
from omegaconf import OmegaConf

from epaiqa.baselines import baseline_info, list_baselines

BASELINE_FILES = sorted(p.stem for p in (CONF / "baseline").glob("*.yaml"))


def test_every_registered_baseline_has_a_config_and_back() -> None:
    assert list_baselines() == BASELINE_FILES


@pytest.mark.parametrize("name", BASELINE_FILES)
def test_baseline_config_matches_the_registry(tmp_path: Path, name: str) -> None:
    cfg = make_cfg(tmp_path, tmp_path, ["experiment=baseline_harmony", f"baseline={name}"], small=False)
    info = baseline_info(name)
    assert cfg.baseline.name == name
    assert cfg.data.reference is info.reference  # FR models get the source image
    assert cfg.model.baseline == name and 3 <= cfg.trainer.max_epochs <= 8  # each baseline's demo budget
    assert cfg.baseline.pretrained is False  # the embedded default never needs weights


def test_demo_matrix_profile_shrinks_training_only(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, tmp_path, ["experiment=baseline_naturalness", "profile=demo_matrix"], small=False)
    assert cfg.trainer.max_epochs == 2 and cfg.trainer.limit_train_batches == 16
    assert cfg.data.image_size == 96 and cfg.data.batch_size == 32  # one budget for every baseline
    assert cfg.baseline.pretrained_backbone == "auto" and cfg.eval_untrained is False
    assert cfg.trainer.limit_test_batches is None and cfg.data.limit_test is None  # the test split scored whole
    assert cfg.data.task == "naturalness" and cfg.data.view == "region"


@pytest.mark.parametrize("name", BASELINE_FILES)
def test_one_batch_fit_of_every_baseline_through_the_datamodule(demo_root: Path, tmp_path: Path, name: str) -> None:
    from omegaconf import open_dict

    from epaiqa.train import train

    task = "naturalness" if name == "joint" else "harmony"
    cfg = make_cfg(demo_root, tmp_path, [f"experiment=baseline_{task}", f"baseline={name}", "debug=fdr"])
    with open_dict(cfg):
        cfg.data.image_size = make_cfg(demo_root, tmp_path, [f"baseline={name}"], small=False).data.image_size
    (record,) = train(cfg).values()
    assert record.model == name and record.task == task
    assert record.n == 4  # one test batch
    preds = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    assert len(preds) == 4 and all(p.split(",")[-1] not in ("nan", "") for p in preds)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("logger", ["default", "wandb_online"])
def test_every_experiment_resolves_with_every_logger(tmp_path: Path, experiment: str, logger: str) -> None:
    cfg = make_cfg(tmp_path, tmp_path, [f"experiment={experiment}", f"logger={logger}"])
    OmegaConf.resolve(cfg)  # an interpolation that names a missing key fails here, not in a user's run
    assert cfg.logger.wandb.group in ("harmony", "naturalness", "overall", cfg.task_name)
