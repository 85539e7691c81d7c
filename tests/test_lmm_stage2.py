import csv
from pathlib import Path

import pytest
import torch
from helpers import make_cfg

from epaiqa.errors import ConfigError
from epaiqa.records.results import read_record
from epaiqa.train import train


def predictions(folder: Path) -> dict[tuple[str, str], float]:
    with (folder / "predictions.csv").open() as fh:
        return {(r["id"], r["task"]): float(r["pred"]) for r in csv.DictReader(fh)}


def test_stage2_trains_then_init_from_carries_the_weights(demo_root: Path, tmp_path: Path) -> None:
    common = ["experiment=stage2_mixed", "data.limit_test=8", "eval_untrained=false"]
    first = make_cfg(demo_root, tmp_path / "a", [*common, "trainer.limit_train_batches=2"])
    train(first)
    checkpoint = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    assert {p.parent.name for p in (tmp_path / "a").rglob("results.json")} == {"harmony", "naturalness"}
    # each task's record names the view its question showed: the report marks rows of different views
    views = {t: read_record(tmp_path / "a" / t / "results.json").data["view"] for t in ("harmony", "naturalness")}
    assert views == {"harmony": first.data.harmony_view, "naturalness": "region"}

    second = make_cfg(demo_root, tmp_path / "b", [*common, "train=false", f"model.init_from={checkpoint}"])
    train(second)
    fresh = make_cfg(demo_root, tmp_path / "c", [*common, "train=false"])
    train(fresh)
    trained, carried, untrained = (predictions(tmp_path / d) for d in ("a", "b", "c"))
    assert carried.keys() == trained.keys() and len(trained) == 8
    assert all(abs(carried[k] - trained[k]) < 1e-4 for k in trained)
    assert any(abs(untrained[k] - trained[k]) > 1e-4 for k in trained)  # training changed the scores
    assert all(1.0 <= v <= 5.0 for v in trained.values())


def test_init_from_a_missing_checkpoint_is_a_clear_error(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", f"model.init_from={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(ConfigError, match=r"model\.init_from: .*nope\.ckpt does not exist"):
        train(cfg)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_init_from_a_corrupt_checkpoint_is_a_clear_error(demo_root: Path, tmp_path: Path, content: bytes) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(content)
    cfg = make_cfg(demo_root, tmp_path / "out", ["experiment=stage2_harmony", f"model.init_from={broken}"])
    with pytest.raises(ConfigError, match=r"model\.init_from: .*broken\.ckpt is not a readable Lightning checkpoint"):
        train(cfg)


def test_init_from_a_checkpoint_of_another_backbone_is_a_clear_error(demo_root: Path, tmp_path: Path) -> None:
    import torch

    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.some.weight": torch.zeros(2)}}, other)
    cfg = make_cfg(demo_root, tmp_path / "out", ["experiment=stage2_harmony", f"model.init_from={other}"])
    with pytest.raises(ConfigError, match=r"other\.ckpt does not fit model\.backbone"):
        train(cfg)


def test_init_from_a_folder_or_a_checkpoint_without_lineage_is_explained(demo_root: Path, tmp_path: Path) -> None:
    import torch

    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    cfg = make_cfg(demo_root, tmp_path / "a", ["experiment=stage2_harmony", f"model.init_from={folder}"])
    with pytest.raises(ConfigError, match=r"sharded \(DeepSpeed\) checkpoint folder.*convert_zero_checkpoint_to_fp32"):
        train(cfg)
    old = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}}, old)
    ablation = ["experiment=stage2_harmony", "ablation=wo_stage1", f"model.init_from={old}"]
    with pytest.raises(ConfigError, match="records no stage lineage"):
        train(make_cfg(demo_root, tmp_path / "b", ablation))


def test_stage1_trains_projector_not_llm_and_chains_into_stage2(demo_root: Path, tmp_path: Path) -> None:
    import json

    import torch

    from epaiqa.lmm.backbones import build_tiny_llava_onevision

    cfg = make_cfg(
        demo_root,
        tmp_path / "s1",
        [
            "experiment=stage1_grounding",
            "trainer.limit_train_batches=2",
            "data.limit_test=4",
            "data.limit_train_eval=4",
        ],
    )
    train(cfg)
    results = json.loads((tmp_path / "s1" / "results.json").read_text())
    metrics = results["test"]
    assert results["task"] == "grounding" and metrics["n"] == 4
    assert 0.0 <= metrics["parse_failure_rate"] <= 1.0
    # the reference a grounding model must beat: always answering the scored samples' mean box
    from epaiqa.lmm.grounding import iou

    with open(tmp_path / "s1" / "predictions.csv", newline="") as f:
        boxes = [[float(r[f"bbox_{k}"]) for k in ("x", "y", "z1", "z2")] for r in csv.DictReader(f)]
    mean = [sum(b[k] for b in boxes) / 4 for k in range(4)]
    assert metrics["mean_box_iou"] == pytest.approx(sum(iou(mean, b) for b in boxes) / 4)
    assert 0.0 < metrics["mean_box_iou"] < 1.0 and metrics["mean_box_centre_error"] >= 0.0
    # the experiment scores the untrained model too: the IoU and parse failures the trained one must beat
    assert results["untrained"]["n"] == 4 and 0.0 <= results["untrained"]["parse_failure_rate"] <= 1.0
    checkpoint = tmp_path / "s1" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    fresh = build_tiny_llava_onevision(seed=0)[0].state_dict()
    llm = [k for k in fresh if "language_model" in k]
    projector = [k for k in fresh if "multi_modal_projector" in k]
    assert llm and all(torch.equal(state[f"model.{k}"], fresh[k]) for k in llm)  # the LLM is frozen
    assert any(not torch.equal(state[f"model.{k}"], fresh[k]) for k in projector)  # the projector learned

    stage2 = make_cfg(
        demo_root,
        tmp_path / "s2",
        [
            "experiment=stage2_harmony",
            "trainer.limit_train_batches=1",
            "data.limit_test=4",
            f"model.init_from={checkpoint}",
        ],
    )
    (record,) = train(stage2).values()
    assert record.n == 4 and record.lineage == ["grounding", "scoring"] and record.model == "epaiqa_tiny"


def test_lr_groups_give_named_parameters_their_own_learning_rate() -> None:
    from epaiqa.models.lmm_module import EPAIQAScoring

    stage = EPAIQAScoring(backbone="tiny", lr=1e-4, lr_groups={"multi_modal_projector": 1e-3})
    optimiser = stage.configure_optimizers()
    by_name = {g["name"]: g for g in optimiser.param_groups}
    assert (by_name["multi_modal_projector"]["lr"], by_name["rest"]["lr"]) == (1e-3, 1e-4)
    projector = {id(p) for n, p in stage.model.named_parameters() if "multi_modal_projector" in n}
    assert projector and {id(p) for p in by_name["multi_modal_projector"]["params"]} == projector
    trained = [p for p in stage.model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in optimiser.param_groups) == len(trained)  # each trained parameter once
    with pytest.raises(ConfigError, match=r"model.lr_groups: no trained parameter name contains \['projektor'\]"):
        EPAIQAScoring(backbone="tiny", lr_groups={"projektor": 1e-3}).configure_optimizers()


def test_level_sigma_trains_stage2_on_soft_level_targets(demo_root: Path) -> None:
    from epaiqa.data.manifest import load_manifest
    from epaiqa.lmm.data import InstructionDataset, collate_instructions
    from epaiqa.lmm.instructions import encode_supervised
    from epaiqa.models.lmm_module import EPAIQAScoring

    samples = [s for s in load_manifest(demo_root) if s.score("naturalness") is not None][:2]
    pairs = [(samples[0], "harmony"), (samples[1], "naturalness")]
    batch = collate_instructions([InstructionDataset(demo_root, pairs, True, False, False)[i] for i in range(2)])
    assert all(0.5 <= v <= 5.5 for v in batch["levels"])  # where each MOS lies on the level scale
    hard, soft = EPAIQAScoring(backbone="tiny"), EPAIQAScoring(backbone="tiny", level_sigma=0.5)
    inputs = encode_supervised(hard.processor, batch["conversations"], batch["images"])
    with torch.no_grad():
        one_hot, spread = hard.supervised_loss(inputs, batch), soft.supervised_loss(inputs, batch)
    assert torch.isfinite(spread) and abs(float(spread) - float(one_hot)) > 1e-3  # the same weights, other targets
    for bad in (0, -1.0, "wide"):
        with pytest.raises(ConfigError, match=r"model\.level_sigma must be null"):
            EPAIQAScoring(backbone="tiny", level_sigma=bad)
