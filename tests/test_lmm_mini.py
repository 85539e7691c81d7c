"""The ``mini`` backbone: composed offline from package-shipped weights, loaded like a real backbone."""

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from epaiqa.errors import ConfigError
from epaiqa.lmm.backbones import build_backbone, load_backbone
from epaiqa.lmm.instructions import (
    ANSWER_TEMPLATES,
    QALIGN_ANSWER,
    encode_supervised,
    grounding_answer,
    harmony_instruction,
)
from epaiqa.lmm.mini import PATCH_SIZE, STATISTICS_CHANNELS, ensure_mini, mini_dir
from epaiqa.lmm.scoring import level_readout
from epaiqa.weights import lite0_state_dict

#: SmolLM2's ids of the level words with their leading space (single tokens; the readout relies on it)
LEVEL_IDS = {" bad": 3309, " poor": 3183, " fair": 3506, " good": 1123, " excellent": 5412}


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    cache = tmp_path_factory.mktemp("cache")
    saved = ensure_mini(cache)
    assert saved == mini_dir(cache) and (saved / "model.safetensors").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    model, processor = build_backbone({"id": "mini", "name": "mini", "cache_dir": str(cache)})
    return model, processor, saved


def test_mini_loads_through_load_backbone_with_its_pretrained_parts(mini: tuple) -> None:
    model, processor, saved = mini
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    stem = model.model.vision_tower.timm_model.conv_stem.weight
    assert torch.equal(stem, lite0_state_dict()["conv_stem.weight"])  # ImageNet Lite0, as the package ships it
    again, _ = load_backbone(str(saved), dtype="float32")  # the same path as a real backbone's local copy
    assert torch.equal(
        again.model.multi_modal_projector.linear_1.weight, model.model.multi_modal_projector.linear_1.weight
    )
    chat = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    prompt = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>user\n") and "You are a helpful" not in prompt  # no default system turn
    inputs = processor.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert "Paris" in processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])  # SmolLM2 intact


def test_mini_level_words_are_single_tokens_and_images_55_tokens(mini: tuple, tmp_path: Path) -> None:
    model, processor, _ = mini
    tokenizer = processor.tokenizer
    for word, token in LEVEL_IDS.items():
        assert tokenizer(word, add_special_tokens=False)["input_ids"] == [token]
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Rate it."}]}]
    context = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    for template in (*ANSWER_TEMPLATES.values(), QALIGN_ANSWER):
        readout = level_readout(processor, template, context)
        assert list(readout.ids) == [LEVEL_IDS[w] for w in (" bad", " poor", " fair", " good", " excellent")]

    Image.new("RGB", (192, 160), (200, 30, 30)).save(tmp_path / "a.png")
    from epaiqa.data.schema import PAISample

    sample = PAISample(
        id="a", source="a.png", edited="a.png", prompt="Make it red.", bbox=(0.5, 0.5, 0.5, 0.5),
        edit_type="style_change", editor="x", mos={"harmony": 4.2}, cot=None,
    )  # fmt: skip
    instruction = harmony_instruction(sample, tmp_path)
    batch = encode_supervised(processor, [instruction.conversation], [instruction.images])
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    # the 7×7 map's 49 tokens and one statistics token per early Lite0 block
    assert int((batch["input_ids"] == image_token).sum()) == (224 // PATCH_SIZE) ** 2 + len(STATISTICS_CHANNELS) == 55
    assert batch["pixel_values"].shape == (1, 3, 224, 224)
    assert float(batch["pixel_values"].min()) >= -1.0 and float(batch["pixel_values"].max()) <= 1.0  # Lite0's range
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def mini_stage(saved: Path, out: Path, *overrides: str) -> Any:
    """The stage a config with ``model/backbone=mini`` and ``overrides`` builds, from the test's ``mini`` cache."""
    from helpers import make_cfg
    from omegaconf import open_dict

    from epaiqa.runs import build

    cfg = make_cfg(out, out, ["model/backbone=mini", *overrides], small=False)
    with open_dict(cfg):
        cfg.model.backbone.cache_dir = str(saved.parent)
    return build(cfg.model)


def test_mini_recipe_trains_the_tower_side_in_stage2_and_lora_in_stage3(mini: tuple, tmp_path: Path) -> None:
    _, _, saved = mini

    def stage(experiment: str) -> Any:
        return mini_stage(saved, tmp_path, f"experiment={experiment}")

    module = stage("stage2_harmony")
    trained = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert any("multi_modal_projector" in n for n in trained)
    assert any("timm_model.blocks.6." in n for n in trained) and any("conv_head" in n for n in trained)
    assert any("vision_tower.statistics" in n for n in trained)
    assert not any("timm_model.blocks.5." in n or "conv_stem" in n for n in trained)
    # stage 2: the LLM frozen (stage2_freeze_llm), no adapters
    assert not any("language_model" in n or "lm_head" in n or "lora_" in n for n in trained)
    module.train()
    norms = {n: m.training for n, m in module.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norms and all(not mode for n, mode in norms.items() if ".blocks.5." in n or n.endswith("timm_model.bn1"))
    assert any(mode for n, mode in norms.items() if ".blocks.6." in n)  # the trained stage's statistics update
    # the recipe's rates: projector and statistics 1e-3, the tower's last stage 1e-4; nothing else trains
    assert {g["name"]: g["lr"] for g in module.param_groups()} == {
        "multi_modal_projector": 1e-3,
        "vision_tower.statistics": 1e-3,
        "timm_model": 1e-4,
    }
    # the CPU recipe: SmolLM2 cut to its first 8 layers, level words learnt as soft targets
    assert len(module.model.model.language_model.layers) == 8
    assert module.hparams["level_sigma"] == 0.5
    # stage 3 writes explanations: LoRA adapters on the LLM at model.lr 5e-4, the LLM's own weights frozen
    explain = stage("stage3_explain")
    trained = [n for n, p in explain.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trained)
    assert not any("language_model" in n and "lora_" not in n for n in trained)
    groups = {g["name"]: g for g in explain.param_groups()}
    assert groups["rest"]["lr"] == 5e-4
    assert all(
        "lora_" in n for n, p in explain.model.named_parameters() if any(p is q for q in groups["rest"]["params"])
    )
    assert len(explain.model.base_model.model.model.language_model.layers) == 8
    # stage 1 on mini: LoRA adapters on the frozen LLM (the documented exception), and room for E.1's whole answer
    grounding = stage("stage1_grounding")
    trained = [n for n, p in grounding.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trained)
    assert not any("language_model" in n and "lora_" not in n for n in trained)
    longest = grounding_answer((0.9999, 0.9999, 0.9999, 0.9999))
    answer_tokens = len(grounding.processor.tokenizer(longest, add_special_tokens=False)["input_ids"]) + 1  # + eot
    assert answer_tokens <= grounding.hparams["max_new_tokens"]


def test_mini_norm_eval_keeps_every_batch_norms_statistics_while_its_scale_still_trains(
    mini: tuple, tmp_path: Path
) -> None:
    _, _, saved = mini
    module = mini_stage(saved, tmp_path, "experiment=stage2_harmony", "model.norm_eval=true")
    module.train()
    norms = {n: m for n, m in module.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    head = next(m for n, m in norms.items() if n.endswith("timm_model.bn2"))
    assert head.weight.requires_grad and not any(m.training for m in norms.values())
    before = head.running_mean.clone()
    tower = module.model.model.vision_tower
    tower(torch.randn(2, 3, 224, 224) * 3).last_hidden_state.sum().backward()
    assert torch.equal(head.running_mean, before) and head.weight.grad is not None
    # without it (the default) the trained stage's statistics move with its batches
    module = mini_stage(saved, tmp_path, "experiment=stage2_harmony")
    module.train()
    head = next(m for n, m in module.model.named_modules() if n.endswith("timm_model.bn2"))
    before = head.running_mean.clone()
    module.model.model.vision_tower(torch.randn(2, 3, 224, 224) * 3)
    assert not torch.equal(head.running_mean, before)


@pytest.mark.parametrize("norm_eval", [False, True])
def test_mini_frozen_batch_norms_keep_their_statistics_through_a_real_fit(
    mini: tuple, demo_root: Path, tmp_path: Path, norm_eval: bool
) -> None:
    from helpers import make_cfg
    from omegaconf import open_dict

    from epaiqa.train import train

    _, _, saved = mini
    overrides = ["model/backbone=mini", "experiment=stage2_harmony", "trainer.limit_train_batches=3"]
    cfg = make_cfg(demo_root, tmp_path, [*overrides, "data.limit_test=4", f"model.norm_eval={norm_eval}"])
    with open_dict(cfg):
        cfg.model.backbone.cache_dir = str(saved.parent)
        cfg.eval_untrained = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    assert not [w for w in caught if "in eval mode" in str(w.message)]  # the rule's batch norms: no Lightning warning
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    imagenet = lite0_state_dict()

    def moved(block: str) -> bool:
        key = next(k for k in state if f"timm_model.{block}" in k and k.endswith("running_mean"))
        return not torch.equal(state[key], imagenet[key.split("timm_model.")[1]])

    assert not moved("blocks.5.")  # a frozen stage normalises with ImageNet's statistics in training too
    assert moved("blocks.6.") is not norm_eval  # the trained stage's statistics follow its batches, unless norm_eval


def test_mini_pair_difference_hands_the_edited_maps_as_their_difference_from_the_source(mini: tuple) -> None:
    model, _, _ = mini
    tower = model.model.vision_tower
    generator = torch.Generator().manual_seed(1)
    source = torch.rand(3, 224, 224, generator=generator).mul(2).sub(1)
    edited = source.clone()
    edited[:, 32:96, 128:192] = torch.rand(3, 64, 64, generator=generator).mul(2).sub(1)  # one region changed
    pairs = torch.stack([source, edited, source, source])
    was_training = tower.training
    tower.eval()
    try:
        with torch.no_grad():
            plain = tower(pairs).last_hidden_state
            tower.pair_difference = True
            shown = tower(pairs).last_hidden_state
            with pytest.raises(ValueError, match="pairs of images, got 3"):
                tower(pairs[:3])
    finally:
        tower.pair_difference = False
        tower.train(was_training)
    maps = 49
    assert torch.equal(shown[0::2], plain[0::2])  # the sources as they are
    assert torch.allclose(shown[1, :maps], plain[1, :maps] - plain[0, :maps], atol=1e-5)
    assert torch.equal(shown[:, maps:], plain[:, maps:])  # each image keeps its own statistics tokens
    assert shown[3, :maps].abs().max() < 1e-5  # the same image twice: nothing to show
    cells = shown[1, :maps].norm(dim=1).reshape(7, 7)
    assert cells[1:3, 4:6].mean() > 2 * cells[5:, :3].mean()  # the changed region's cells stand out


def test_mini_stage1_turns_pair_difference_on_and_refuses_a_tower_without_it(mini: tuple, tmp_path: Path) -> None:
    from helpers import make_cfg

    from epaiqa.runs import build

    _, _, saved = mini
    module = mini_stage(saved, tmp_path, "experiment=stage1_grounding", "model.pair_difference=true")
    towers = [m for m in module.model.modules() if hasattr(m, "pair_difference")]
    assert towers and all(t.pair_difference for t in towers) and module.hparams["pair_difference"] is True
    cfg = make_cfg(tmp_path, tmp_path, ["experiment=stage1_grounding", "model.pair_difference=true"], small=False)
    with pytest.raises(ConfigError, match=r"model\.pair_difference: the vision tower of .* only mini's"):
        build(cfg.model)


def test_mini_statistics_tokens_see_what_the_map_tokens_do_not(mini: tuple) -> None:
    """Noise in the image moves the statistics tokens far more than the last block's map tokens."""
    model, _, _ = mini
    tower = model.model.vision_tower
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 224, 224, generator=generator).mul(0.2).add(0.4)
    noisy = (clean + 0.3 * torch.randn(clean.shape, generator=generator)).clamp(-1, 1)
    with torch.no_grad():
        a, b = (tower(x).last_hidden_state for x in (clean, noisy))
    assert a.shape == (2, 49 + len(STATISTICS_CHANNELS), 1280)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    stats = (a[:, 49:] - b[:, 49:]).norm() / a[:, 49:].norm()
    assert stats > 0.05  # the statistics tokens respond to the noise


def test_mini_scores_agree_in_fp32_and_bf16_autocast(mini: tuple, demo_root: Path) -> None:
    """bf16 autocast (weights fp32) returns float32 scores that track fp32's on the 1-5 scale.

    Untrained mini (random projector, 24 bf16 layers) drifts: measured mean |diff| 0.12, max 0.38 over these
    8 scores; a broken autocast path (bf16 image features cast wrong, bf16 readout) lands far outside.
    """
    from epaiqa.data.manifest import load_manifest
    from epaiqa.lmm.instructions import naturalness_instruction
    from epaiqa.lmm.scoring import score

    model, processor, _ = mini
    model.eval()
    samples = load_manifest(demo_root)[:4]
    for build, template in (
        (harmony_instruction, ANSWER_TEMPLATES["harmony"]),
        (naturalness_instruction, ANSWER_TEMPLATES["naturalness"]),
    ):
        items = [build(s, demo_root) for s in samples]
        convs, images = [i.conversation for i in items], [i.images for i in items]
        fp32 = score(model, processor, convs, images, template)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = score(model, processor, convs, images, template)
        assert fp32.dtype == bf16.dtype == torch.float32 and fp32.shape == (4,)
        diff = (fp32 - bf16).abs()
        assert float(diff.max()) <= 0.5 and float(diff.mean()) <= 0.2, (fp32, bf16)


#: what the recipe trains of the tower: its last stage, head and the statistics tokens' layers
TRAINED_TOWER = ("timm_model.blocks.6.", "timm_model.conv_head.", "timm_model.bn2.", "statistics.")


def test_mini_tower_keeps_its_frozen_prefix_per_view_with_the_same_tokens_and_gradients(mini: tuple) -> None:
    """The recipe's frozen blocks 0–5 computed once per view: the same tokens and last-stage gradients."""
    from epaiqa.lmm.frozen_prefix import frozen_prefix_length

    model, _, _ = mini
    tower = model.model.vision_tower
    net = tower.timm_model
    stages = [net.conv_stem, net.bn1, *net.blocks]
    try:
        tower.train()
        for name, param in tower.named_parameters():
            param.requires_grad = name.startswith(TRAINED_TOWER)
        assert frozen_prefix_length(stages) == 1  # the stem conv; its norm still updates its statistics
        for stage in stages[:8]:
            stage.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
        assert frozen_prefix_length(stages) == 8  # stem conv, stem norm, blocks 0-5 (block 6 trains)
        views = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1

        def tokens_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            tower.zero_grad(set_to_none=True)
            out = tower(x).last_hidden_state
            out.square().mean().backward()
            return out.detach(), net.blocks[6][0].conv_pw.weight.grad.clone()

        reference = tokens_and_grad(views)
        tower.keep_prefixes(2)
        cache = tower.prefix_cache
        first = tokens_and_grad(views)  # three misses; the cache keeps the last two
        assert (cache.hits, cache.misses, len(cache.entries)) == (0, 3, 2)
        second = tokens_and_grad(views[[2, 1, 0]])  # two hits, one miss (the view dropped) computed again
        assert (cache.hits, cache.misses) == (2, 4)
        for got, order in ((first, [0, 1, 2]), (second, [2, 1, 0])):
            # the same arithmetic on batches of other sizes: CPU convolution kernels (AVX2 without AVX-512) round
            # differently in the last bits (1.6e-5 at most, seen on an AMD EPYC without AVX-512)
            torch.testing.assert_close(got[0], reference[0][order], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got[1], reference[1], rtol=1e-4, atol=1e-6)
        tower.eval()
        with torch.no_grad():
            tower(views[:1])
        assert cache.misses == 4  # evaluation does not read or fill the cache
        tower.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tower(views[:1])
        assert cache.misses == 5  # another precision is another key
    finally:
        tower.keep_prefixes(0)
        model.eval()
        for param in model.parameters():
            param.requires_grad = True
    assert tower.prefix_cache is None


def test_tower_cache_is_refused_where_the_tower_cannot_keep_views() -> None:
    from epaiqa.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.backbone\.tower_cache: the vision tower"):
        build_backbone({"id": "tiny", "name": "tiny", "tower_cache": 100})
    with pytest.raises(ConfigError, match=r"model\.backbone\.tower_cache must be a whole number"):
        build_backbone({"id": "tiny", "name": "tiny", "tower_cache": -1})


def test_view_key_tells_views_and_precisions_apart_in_any_dtype() -> None:
    from epaiqa.lmm.frozen_prefix import view_key

    view = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert view_key(view) == view_key(view.clone())
    assert view_key(view) != view_key(view + 1e-3)
    assert view_key(view.bfloat16()) != view_key(view)  # a bf16 tower's views hash too
    plain = view_key(view)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert view_key(view) != plain  # computed under bf16 autocast: another entry


def test_mini_statistics_standardisation_is_fitted_once_and_handed_on(mini: tuple, tmp_path: Path) -> None:
    """``model.standardise_statistics``: every copy peft keeps is fitted, kept on a second call and by init_from."""
    import numpy as np

    from epaiqa.lmm.mini import Lite0TokensModel, StatisticsTokens, standardise_statistics

    _, _, saved = mini

    def stage(*overrides: str) -> torch.nn.Module:
        # with LoRA in stage 2 (the recipe freezes the LLM there): peft keeps a trained copy of the statistics layers
        return mini_stage(saved, tmp_path, "experiment=stage2_harmony", "stage2_freeze_llm=false", *overrides)

    module = stage("model.standardise_statistics=12")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) // (k + 1)) for k in range(12)]
    dataset = [{"images": [image]} for image in images]
    tower = next(m for m in module.model.modules() if isinstance(m, Lite0TokensModel))
    pixels = module.processor.image_processor(images, return_tensors="pt")["pixel_values"]
    module.eval()
    with torch.no_grad():
        before = tower(pixels).last_hidden_state[:, 49:]
    assert standardise_statistics(module.model, module.processor, dataset, 12) == (
        "statistics tokens: standardisation fitted on 12 training views"
    )
    copies = [m for m in tower.modules() if isinstance(m, StatisticsTokens)]
    assert len(copies) == 2 and all(bool(m.fitted) for m in copies)  # the original and peft's trained copy
    net = tower.timm_model
    with torch.no_grad():
        _, raw = tower._run_stages(pixels, [net.conv_stem, net.bn1, *net.blocks], 0, 8)
        normed = copies[1].layers[2][1](copies[1].layers[2][0](raw[2]))  # block 2: LayerNorm, then standardised
        after = tower(pixels).last_hidden_state[:, 49:]
    torch.testing.assert_close(normed.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    spread = copies[1].layers[2][1].std > 1e-4  # a constant feature keeps the floor instead
    assert spread.sum() > 60 and torch.allclose(normed.std(0)[spread], torch.ones(int(spread.sum())), atol=1e-3)
    assert not torch.allclose(before, after)  # the copy the forward uses is the fitted one
    mean = copies[1].layers[0][1].mean.clone()
    assert "kept" in standardise_statistics(module.model, module.processor, dataset[:2], 2)
    assert torch.equal(copies[1].layers[0][1].mean, mean)
    # a stage started from these weights (LoRA merged) keeps them
    path = tmp_path / "stage2.ckpt"
    state = {f"model.{k}": v for k, v in module.model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": dict(module.hparams), "epaiqa_stages": ["scoring"]}, path)
    following = stage(f"model.init_from={path}")
    kept = [m for m in following.model.modules() if isinstance(m, StatisticsTokens)]
    assert kept and all(bool(m.fitted) and torch.equal(m.layers[0][1].mean, mean) for m in kept)
    # refusals: a tower without statistics tokens, a negative count
    with pytest.raises(ConfigError, match=r"model\.standardise_statistics=8: the vision tower of Linear"):
        standardise_statistics(torch.nn.Linear(2, 2), None, [], 8)
    with pytest.raises(ConfigError, match=r"model\.standardise_statistics must be a number of training views"):
        stage("model.standardise_statistics=-1")


def test_mini_map_grid_pools_the_map_tokens_and_the_processor_counts_them(mini: tuple) -> None:
    """``model.backbone.map_grid=3``: 9 map tokens (the 7×7 map's 3×3 average pool) + the 6 statistics tokens."""
    _, _, saved = mini
    model, processor = build_backbone({"id": "mini", "name": "mini", "cache_dir": str(saved.parent), "map_grid": 3})
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Rate it."}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[[Image.new("RGB", (96, 80), "gray")]], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 9 + len(STATISTICS_CHANNELS)
    tower = model.model.vision_tower
    with torch.no_grad():
        pooled = tower(inputs["pixel_values"]).last_hidden_state
        tower.map_grid = None
        full = tower(inputs["pixel_values"]).last_hidden_state
        tower.map_grid = 3
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]
    assert pooled.shape == (1, 9 + len(STATISTICS_CHANNELS), 1280)
    grid = full[:, :49].transpose(1, 2).reshape(1, 1280, 7, 7)
    torch.testing.assert_close(pooled[:, :9], torch.nn.functional.adaptive_avg_pool2d(grid, 3).flatten(2).mT)
    torch.testing.assert_close(pooled[:, 9:], full[:, 49:])  # the statistics tokens are untouched
    with pytest.raises(ConfigError, match=r"model\.backbone\.map_grid: the vision tower"):
        build_backbone({"id": "tiny", "name": "tiny", "map_grid": 3})
    with pytest.raises(ConfigError, match=r"model\.backbone\.map_grid must be an integer in \[1, 7\], got 8"):
        build_backbone({"id": "mini", "name": "mini", "cache_dir": str(saved.parent), "map_grid": 8})
