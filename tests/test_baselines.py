import socket
import time
from pathlib import Path

import pytest
import torch
from helpers import make_cfg
from torch import nn

from epaiqa.baselines import baseline_info, create_baseline, list_baselines
from epaiqa.baselines.joint import ambrosio_tortorelli_smooth, shuffle_patches
from epaiqa.errors import ConfigError

TINY_CLIP = {
    "embed_dim": 64,
    "vision_layers": [1, 1, 1, 1],
    "vision_width": 32,
    "transformer_width": 64,
    "transformer_heads": 1,
    "transformer_layers": 1,
}
SMALL = {
    "stair_iqa": {"depth": 18},
    "topiq_nr": {"backbone": "resnet18"},
    "topiq_fr": {"backbone": "resnet18"},
    "dbcnn": {"vgg": "vgg11"},
    "hyperiqa": {"base_model_name": "resnet18"},
    "musiq": {"hidden_size": 64, "mlp_dim": 128, "num_heads": 2, "num_layers": 2, "longer_side_lengths": [64, 96]},
    "nima": {"base_model_name": "resnet18"},
    "qualiclip": TINY_CLIP,
    "clipiqa": TINY_CLIP,
    "joint": {
        "input_size": 64,
        "patch_size": 16,
        "swin_embed_dim": 32,
        "swin_depths": [1, 1, 1, 1],
        "resnet_depth": 18,
    },
    "wadiqam_nr": {"train_patch_num": 16},
    "wadiqam_fr": {"train_patch_num": 16},
}
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def norm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every normalisation layer of a model by name (BatchNorm*, GroupNorm, LayerNorm)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, NORMS)}


#: Normalisation layers a baseline keeps in eval mode while it trains, because its paper does so
#: (build options -> name prefix of the frozen layers, and why). Built as in conf/baseline/*.yaml (from
#: scratch), no baseline freezes any: every batch norm, group norm and layer norm trains.
FROZEN_NORMS = {
    # CLIP-IQA+/QualiCLIP+ learn prompts on a frozen OpenAI CLIP, which upstream keeps in eval mode
    ("clipiqa", "freeze_clip"): "net.clip.",
    ("qualiclip", "freeze_clip"): "net.clip.",
    # TOPIQ trains ImageNet backbones with frozen batch norms (pyiqa's fix_bn, the authors' code); see
    # tests/test_pretrained_backbones.py for pretrained_backbone=True
}


def test_registry_lists_nr_and_fr_models() -> None:
    names = list_baselines()
    assert {"stair_iqa", "topiq_nr", "topiq_fr", "wadiqam_nr", "wadiqam_fr"} <= set(names)
    assert {"dbcnn", "hyperiqa", "musiq", "nima", "qualiclip", "clipiqa", "joint"} <= set(names)
    assert set(list_baselines("FR")) == {n for n in names if baseline_info(n).reference}
    with pytest.raises(ConfigError, match="unknown baseline 'nope'"):
        baseline_info("nope")


@pytest.mark.parametrize("name", list_baselines())
def test_builds_offline_trains_a_step_with_every_norm_layer_in_train_mode(name: str) -> None:
    # every baseline trains as its paper trains it: from scratch, every normalisation layer is in training
    # mode after a step (pyiqa's CFANet, TOPIQ, puts its backbone in eval mode at the end of every forward
    # pass, so its batch norms would normalise with near-untrained running statistics from step 2 on);
    # none is after .eval()
    torch.manual_seed(0)
    model = create_baseline(name, **SMALL.get(name, {}))
    norms = norm_layers(model)
    assert bool(norms) == (name not in ("wadiqam_nr", "wadiqam_fr"))  # WaDIQaM has no normalisation layers
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    img, ref = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = model(img, ref)
    assert out.shape == (2,)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(out).all()
    optimizer.step()
    assert [n for n, m in norms.items() if not m.training] == []
    model.eval()
    assert [n for n, m in norms.items() if m.training] == []
    with torch.no_grad():
        assert model(img, ref).shape == (2,)


@pytest.mark.parametrize("name", ["clipiqa", "qualiclip"])
def test_a_frozen_clip_stays_in_eval_mode(name: str) -> None:
    model = create_baseline(name, freeze_clip=True, **TINY_CLIP)
    assert not any(p.requires_grad for p in model.net.clip.parameters())
    # with fixed prompts nothing trains: a forward pass in training mode must leave the CLIP's statistics alone
    before = {k: v.clone() for k, v in model.net.clip.state_dict().items() if "running_" in k}
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    assert {k for k, v in model.net.clip.state_dict().items() if "running_" in k} == set(before)
    assert all(torch.equal(model.net.clip.state_dict()[k], v) for k, v in before.items())
    frozen = FROZEN_NORMS[(name, "freeze_clip")]
    norms = norm_layers(model)
    assert sorted(n for n, m in norms.items() if not m.training) == sorted(n for n in norms if n.startswith(frozen))
    model.eval()
    assert not any(m.training for m in norms.values())


@pytest.mark.parametrize("name", list_baselines())
def test_pretrained_without_weights_fails_fast_with_instructions(name: str, tmp_path) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        create_baseline(name, pretrained=True, weights_path=str(tmp_path / "missing.pth"))
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "missing.pth does not exist" in message and "Download" in message and "weights_path" in message


def test_full_reference_model_needs_the_source() -> None:
    model = create_baseline("wadiqam_fr")
    with pytest.raises(ValueError, match="full-reference"):
        model(torch.rand(1, 3, 64, 64))


def test_pretrained_weights_round_trip_from_local_file(tmp_path) -> None:
    model = create_baseline("stair_iqa", depth=18)
    path = tmp_path / "stair.pth"
    torch.save(model.net.state_dict(), path)
    loaded = create_baseline("stair_iqa", pretrained=True, weights_path=str(path), depth=18)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# pyiqa constructors that fetch weights in __init__ unless kept off the network
FETCHING_UPSTREAM = ("dbcnn", "hyperiqa", "nima", "qualiclip", "clipiqa")


@pytest.mark.parametrize("name", FETCHING_UPSTREAM)
def test_builds_without_network_or_cache_writes(name: str, tmp_path, monkeypatch) -> None:
    attempts: list[object] = []

    def no_connect(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torchvision, torch.hub and pyiqa's CLIP cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    model = create_baseline(name, **SMALL[name])
    assert attempts == []
    assert list(tmp_path.rglob("*")) == []
    # every parameter of a from-scratch model trains (pyiqa freezes DBCNN's branches and the CLIPs)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", ["qualiclip", "clipiqa"])
def test_clip_is_a_registered_trained_submodule(name: str) -> None:
    model = create_baseline(name, **TINY_CLIP)
    keys = model.state_dict().keys()
    assert any(k.startswith("net.clip.visual.") for k in keys) and any(
        k.startswith("net.clip.transformer.") for k in keys
    )
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    # the text encoder gets gradients: prompt features are computed from it, not fixed
    assert model.net.clip.token_embedding.weight.grad is not None
    assert model.net.clip.visual.conv1.weight.grad is not None


def _patch_grid(rows: int, cols: int, p: int) -> torch.Tensor:
    values = torch.arange(rows * cols, dtype=torch.float32).reshape(1, 1, rows, cols)
    return values.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3).repeat(2, 3, 1, 1)


def test_patch_shuffle_swaps_neighbours_and_keeps_the_patches() -> None:
    rows, cols, p = 7, 7, 4
    img = _patch_grid(rows, cols, p)
    torch.manual_seed(0)
    out = shuffle_patches(img, p)
    ids = out[:, 0, ::p, ::p]  # the id each position now holds
    for b in range(2):
        assert sorted(ids[b].flatten().tolist()) == list(range(rows * cols))  # same multiset of patches
        moved = 0
        for k, src in enumerate(ids[b].flatten().long().tolist()):
            (i, j), (si, sj) = divmod(k, cols), divmod(src, cols)
            assert max(abs(i - si), abs(j - sj)) <= 1  # only swapped with an 8-neighbour
            moved += src != k
        assert moved >= rows * cols // 2  # with no artifact mask most patches move
    # patches marked as artifacts stay in place
    movable = torch.ones(rows, cols, dtype=torch.bool)
    movable[0] = False
    kept = shuffle_patches(img, p, movable=movable)[:, 0, ::p, ::p]
    assert torch.equal(kept[:, 0], ids.new_tensor(range(cols)).expand(2, cols))


def test_joint_technical_input_is_deterministic_in_eval_only() -> None:
    net = create_baseline("joint", **SMALL["joint"]).net
    img = torch.rand(3, 3, 64, 64)
    net.eval()
    a, b = net.technical_input(img), net.technical_input(img)
    assert torch.equal(a, b)
    assert torch.equal(net.technical_input(img[1:2]), a[1:2])  # independent of the batch
    net.train()
    torch.manual_seed(1)
    c = net.technical_input(img)
    torch.manual_seed(2)
    assert not torch.equal(c, net.technical_input(img))


def _high_frequency_energy(img: torch.Tensor) -> float:
    """Mean squared Laplacian inside the two flat halves of the step image (the edge columns left out)."""
    lap = 4 * img[..., 1:-1, 1:-1] - img[..., :-2, 1:-1] - img[..., 2:, 1:-1] - img[..., 1:-1, :-2] - img[..., 1:-1, 2:]
    flat = [*range(0, 20), *range(26, 46)]
    return float((lap[..., flat] ** 2).mean())


def test_ambrosio_tortorelli_smoothing_removes_noise_and_keeps_edges() -> None:
    torch.manual_seed(0)
    step = torch.zeros(1, 3, 48, 48)
    step[..., :, 24:] = 1.0
    noisy = (0.2 + 0.6 * step + 0.02 * torch.randn_like(step)).clamp(0, 1)
    smooth = ambrosio_tortorelli_smooth(noisy, rescale=False)
    assert smooth.shape == noisy.shape and torch.isfinite(smooth).all()
    assert _high_frequency_energy(smooth) < 0.25 * _high_frequency_energy(noisy)
    # the step edge survives (edge-preserving, unlike a blur): the halves stay 0.6 apart, and after the
    # default per-channel rescale to [0, 1] nearly 1 apart
    assert float(smooth[..., :, 25:].mean() - smooth[..., :, :23].mean()) > 0.55
    rescaled = ambrosio_tortorelli_smooth(noisy)
    assert float(rescaled[..., :, 25:].mean() - rescaled[..., :, :23].mean()) > 0.85


def test_joint_output_is_the_weighted_sum_of_its_branches() -> None:
    model = create_baseline("joint", **SMALL["joint"]).eval()
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        scores = model.net.branch_scores(img)
        out = model(img)
    assert scores.shape == (2, 2)
    assert torch.allclose(out, 0.145 * scores[:, 0] + 0.769 * scores[:, 1], atol=1e-6)
    assert not torch.allclose(out, scores.mean(dim=1))


def test_pyiqa_model_round_trip_from_local_state_dict(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_baseline("nima", base_model_name="resnet18").eval()
    path = tmp_path / "nima.pth"
    torch.save({"params": model.net.state_dict()}, path)  # pyiqa's checkpoint layout
    torch.manual_seed(1)
    loaded = create_baseline("nima", pretrained=True, weights_path=str(path), base_model_name="resnet18").eval()
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(img), loaded(img))
    fresh = create_baseline("nima", base_model_name="resnet18").eval()
    with torch.no_grad():
        assert not torch.equal(fresh(img), loaded(img))


def test_qualiclip_reads_a_clip_checkpoint_with_fixed_prompt_features(tmp_path) -> None:
    torch.manual_seed(0)
    source = create_baseline("qualiclip", **TINY_CLIP).net
    prompts = torch.randn(14, TINY_CLIP["embed_dim"])
    # the layout of upstream's QualiCLIP.pth: prefixed CLIP weights plus pre-computed prompt features
    checkpoint = {f"clip_model.{k}": v for k, v in source.clip.state_dict().items()}
    checkpoint["prompts_features"] = prompts
    path = tmp_path / "QualiCLIP.pth"
    torch.save(checkpoint, path)
    model = create_baseline("qualiclip", pretrained=True, weights_path=str(path))
    assert torch.equal(model.net.prompts_features, prompts)
    for key, value in source.clip.state_dict().items():
        assert torch.equal(model.net.clip.state_dict()[key], value)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2,)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still what OpenAI ships
def test_clip_torchscript_archive_gets_conversion_advice(tmp_path) -> None:
    path = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ConfigError, match="TorchScript"):
        create_baseline("clipiqa", pretrained=True, weights_path=str(path))


def test_hyperiqa_scores_large_test_images_on_crops() -> None:
    model = create_baseline("hyperiqa", base_model_name="resnet18", num_crop=2).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 240, 256)).shape == (2,)


@pytest.mark.parametrize("name", ["dbcnn", "hyperiqa", "musiq", "nima", "qualiclip", "clipiqa", "joint"])
def test_demo_profile_config_builds_and_scores(tmp_path: Path, name: str) -> None:
    cfg = make_cfg(tmp_path, tmp_path, ["experiment=baseline_harmony", f"baseline={name}"], small=False)
    assert cfg.baseline.name == name and cfg.baseline.pretrained is False and 4 <= cfg.trainer.max_epochs <= 6
    model = create_baseline(name, **cfg.model.baseline_kwargs)  # Hydra hands lists over as ListConfig
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, cfg.data.image_size, cfg.data.image_size))
    assert out.shape == (1,) and torch.isfinite(out).all()


def test_wadiqam_without_a_patch_count_tiles_the_image_once_in_training() -> None:
    net = create_baseline("wadiqam_fr", train_patch_num=None).net  # the demo profiles' setting
    net.train()
    for size, patches in ((96, 9), (128, 16)):
        x = torch.rand(2, 3, size, size)
        crops, _ = net.get_patches(x, x)
        assert net.train_patch_num == patches and crops.shape == (2 * patches, 3, 32, 32)
    fixed = create_baseline("wadiqam_nr", train_patch_num=5).net.train()
    assert fixed.get_patches(torch.rand(1, 3, 128, 128)).shape[0] == 5  # an explicit count stays fixed
