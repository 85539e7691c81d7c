import csv
from pathlib import Path

import pytest
import torch
from helpers import make_cfg

from epaiqa.data.manifest import load_manifest
from epaiqa.errors import ConfigError
from epaiqa.lmm.adapters import apply_lora, enable_gradient_checkpointing, lora_settings
from epaiqa.lmm.backbones import build_tiny_llava_onevision
from epaiqa.lmm.instructions import encode_supervised, harmony_instruction
from epaiqa.runs import build
from epaiqa.train import train


def _batch(root: Path, processor, n: int = 2):  # type: ignore[no-untyped-def]
    pairs = [harmony_instruction(s, root) for s in load_manifest(root)[:n]]
    return encode_supervised(processor, [p.conversation for p in pairs], [p.images for p in pairs])


def test_lora_adapts_the_llm_only_and_trains_the_projector(demo_root: Path) -> None:
    model, processor = build_tiny_llava_onevision()
    wrapped = apply_lora(model, {"enabled": True, "r": 4})
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    assert all("language_model" in n for n in trainable if "lora_" in n)  # no adapters in the vision tower
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("embed_tokens" in n or "vision_tower" in n for n in trainable)
    wrapped.train()
    wrapped(**_batch(demo_root, processor)).loss.backward()
    assert all(p.grad is not None for n, p in wrapped.named_parameters() if p.requires_grad and "lora_B" in n)


def test_lora_settings_reject_unknown_keys_and_bad_rank() -> None:
    with pytest.raises(ConfigError, match=r"model\.lora: unknown keys \['rank'\]"):
        lora_settings({"rank": 8})
    with pytest.raises(ConfigError, match="r must be >= 1"):
        lora_settings({"enabled": True, "r": 0})
    with pytest.raises(ConfigError, match=r"model\.lora"):
        apply_lora(build_tiny_llava_onevision()[0], {"enabled": True, "scope": "no_such_module"})
    with pytest.raises(ConfigError, match=r"modules_to_save: no module named \['merger'\]"):
        apply_lora(build_tiny_llava_onevision()[0], {"enabled": True, "modules_to_save": ["merger"]})


def test_every_lora_setting_is_overridable(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", "model.lora.modules_to_save=[merger]"])
    assert set(cfg.model.lora) == set(lora_settings(None))
    assert list(cfg.model.lora.modules_to_save) == ["merger"]


def test_training_half_precision_weights_warns(demo_root: Path, tmp_path: Path) -> None:
    overrides = ["experiment=stage2_harmony", "model.backbone.dtype=bfloat16", "trainer.limit_train_batches=1"]
    cfg = make_cfg(demo_root, tmp_path, [*overrides, "data.limit_test=2", "eval_untrained=false"])
    with pytest.warns(UserWarning, match="without fp32 master weights"):
        train(cfg)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(demo_root: Path) -> None:
    plain, processor = build_tiny_llava_onevision(seed=2)
    checkpointed, _ = build_tiny_llava_onevision(seed=2)
    enable_gradient_checkpointing(checkpointed)
    batch = _batch(demo_root, processor)
    losses = []
    for model in (plain, checkpointed):
        model.train()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        losses.append(loss.item())
    assert checkpointed.model.language_model.gradient_checkpointing  # set by either API
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    grads = [dict((n, p.grad) for n, p in m.named_parameters() if p.grad is not None) for m in (plain, checkpointed)]
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])


def _predictions(folder: Path) -> dict[str, float]:
    with (folder / "predictions.csv").open() as fh:
        return {r["id"]: float(r["pred"]) for r in csv.DictReader(fh)}


@pytest.mark.parametrize("freeze_llm", [False, True])
def test_a_lora_stage_hands_its_weights_to_the_next_one(demo_root: Path, tmp_path: Path, freeze_llm: bool) -> None:
    # freeze_llm (mini's stage 2): no adapters were added, and the next stage must not merge the lora block it names
    common = ["experiment=stage2_harmony", "data.limit_test=6", "eval_untrained=false"]
    lora = ["model.lora.enabled=true", "model.lora.r=4", "model.lr=1e-2", "trainer.limit_train_batches=2"]
    train(make_cfg(demo_root, tmp_path / "lora", [*common, *lora, f"model.freeze_llm={freeze_llm}"]))
    checkpoint = tmp_path / "lora" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert any("lora_A" in k for k in state) is not freeze_llm
    train(make_cfg(demo_root, tmp_path / "merged", [*common, "train=false", f"model.init_from={checkpoint}"]))
    train(make_cfg(demo_root, tmp_path / "base", [*common, "train=false"]))
    trained, merged, base = (_predictions(tmp_path / d) for d in ("lora", "merged", "base"))
    assert trained.keys() == merged.keys() and len(trained) == 6
    assert all(abs(trained[k] - merged[k]) < 1e-4 for k in trained)  # the next stage starts where this one ended
    assert any(abs(trained[k] - base[k]) > 1e-4 for k in trained)  # and training changed the scores


def test_stage1_refuses_lora_unless_the_llm_is_unfrozen(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage1_grounding", "model.lora.enabled=true"])
    with pytest.raises(ConfigError, match="stage 1 freezes the LLM"):
        train(cfg)
    # the documented exception (mini: the frozen SmolLM2 does not learn the box format): adapters on the LLM
    unfrozen = ["experiment=stage1_grounding", "model.lora.enabled=true", "model.freeze_llm=false"]
    cfg = make_cfg(demo_root, tmp_path, unfrozen)
    module = build(cfg.model)
    trained = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trained)
    assert not any("language_model" in n and "lora_" not in n for n in trained)  # the LLM itself stays frozen


def test_stage2_with_a_frozen_llm_trains_the_projector_and_the_tower_only(demo_root: Path, tmp_path: Path) -> None:
    frozen = ["experiment=stage2_harmony", "model.freeze_llm=true", "model.lora.enabled=true", "model.lora.r=4"]
    module = build(make_cfg(demo_root, tmp_path, frozen).model)
    trained = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert not any("lora_" in n for n in module.model.state_dict())  # no adapters were added
    assert not any("language_model" in n or "lm_head" in n for n in trained)
    assert any("multi_modal_projector" in n for n in trained) and any("vision_tower" in n for n in trained)
    llm = {n: p.detach().clone() for n, p in module.model.named_parameters() if "language_model" in n}
    batch = _batch(demo_root, module.processor)
    optimiser = torch.optim.SGD([p for p in module.model.parameters() if p.requires_grad], lr=1.0)
    module.model(**batch).loss.backward()
    optimiser.step()
    assert all(torch.equal(p, llm[n]) for n, p in module.model.named_parameters() if n in llm)
    # the paper's stage 2 trains the LLM; stage 3 writes explanations, so it trains the LLM whatever stage 2 did
    for experiment in ("stage2_harmony", "stage3_explain"):
        module = build(make_cfg(demo_root, tmp_path, [f"experiment={experiment}"]).model)
        assert any("language_model" in n for n, p in module.model.named_parameters() if p.requires_grad)


def test_mini_freezes_the_llm_in_stage2_only(demo_root: Path, tmp_path: Path) -> None:
    def freeze_llm(*overrides: str) -> bool:
        return make_cfg(demo_root, tmp_path, list(overrides)).model.freeze_llm

    stages = ("stage2_mixed", "stage2_naturalness", "stage3_explain")
    frozen = {e: freeze_llm(f"experiment={e}", "model/backbone=mini") for e in stages}
    assert frozen == {"stage2_mixed": True, "stage2_naturalness": True, "stage3_explain": False}
    assert freeze_llm("experiment=stage2_mixed") is False  # the paper's stage 2 trains all parameters
    assert freeze_llm("experiment=stage2_mixed", "model/backbone=mini", "stage2_freeze_llm=false") is False
