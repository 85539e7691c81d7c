"""DBCNN: deep bilinear CNN, a VGG-16 branch for authentic and an SCNN branch for synthetic distortions.

Paper: W. Zhang, K. Ma, J. Yan, D. Deng, Z. Wang, "Blind Image Quality Assessment Using a Deep
Bilinear Convolutional Neural Network", IEEE TCSVT 30(1), 2020.
Original code: https://github.com/zwx8981/DBCNN-PyTorch (MIT). The arch is pyiqa's
(``pyiqa/archs/dbcnn_arch.py``, https://github.com/chaofengc/IQA-PyTorch, PolyForm Noncommercial
1.0.0), used from the installed package, not copied.

Building offline: pyiqa's ``DBCNN.__init__`` takes torchvision's ImageNet VGG-16 and fetches the
SCNN weights (``load_pretrained_network``) whatever ``pretrained`` says. For the constructor call
only, the names ``torchvision`` and ``load_pretrained_network`` inside ``pyiqa.archs.dbcnn_arch`` are
replaced: the first by a namespace whose ``models.vgg16`` returns the random convolutional part of
a VGG (torchvision's ``make_layers``, initialised as torchvision's VGG; DBCNN keeps only it), the
second by a stand-in that skips the SCNN fetch (and refuses anything else).

From scratch (``pretrained=False``) choices:

- both branches are random, so the freeze that pyiqa applies with ``fc=True`` (the paper's first
  stage: only the bilinear classifier trains on frozen pretrained branches) is undone: every layer
  trains. The classifier keeps pyiqa's Kaiming-normal init.
- the SCNN branch is not pre-trained on synthetic-distortion classification (the paper's
  Waterloo/PASCAL stage needs data and labels we do not have); it learns from the MOS like the rest.
- ``vgg`` picks the VGG depth of the authentic branch (``vgg16`` is the paper's; ``vgg11`` roughly
  halves the cost for CPU runs — every VGG ends with 512 channels, so the bilinear head is unchanged).

``pretrained_backbone=True``: the ImageNet branch is the ImageNet EfficientNet-Lite0 of a PyPI package in
place of VGG-16: its whole convolutional trunk up to the head convolution (1280 channels, stride 32), as
DBCNN takes VGG-16's last convolutional layer; the bilinear product is then 1280 × 128 wide and the
classifier is sized for it (pyiqa hard-codes VGG's 512 channels, so :class:`DBCNNNet` pools for any
width). The SCNN branch stays random (see above). Every layer trains, as in the paper's fine-tuning stage
(its classifier-only first stage is not run). Inputs, for both branches, are normalised with Lite0's
mean = std = 0.5.

``pretrained=True`` builds the same net (VGG-16 only) and loads a full DBCNN state dict, e.g.
pyiqa's ``DBCNN_KonIQ10k-2de81c0a.pth`` (its ``params`` entry), with all layers trainable as in the
paper's fine-tuning stage.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from pyiqa.archs import dbcnn_arch
from pyiqa.archs.dbcnn_arch import DBCNN
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from epaiqa.baselines.common import ScoreModel, load_state_dict_file
from epaiqa.baselines.lite0 import LITE0_MEAN, LITE0_STD, Lite0Trunk
from epaiqa.baselines.registry import register_baseline

CITATION = "Zhang et al., Blind IQA Using a Deep Bilinear Convolutional Neural Network, TCSVT 2020"
SCNN_CHANNELS = 128  # channels of pyiqa's SCNN features (the second branch of the bilinear product)
VGGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}  # torchvision.models.vgg.cfgs keys


class DBCNNNet(DBCNN):
    """pyiqa's DBCNN whose bilinear pooling reads the channel counts of its branches (pyiqa's assumes VGG's 512)."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.preprocess(X)
        x1, x2 = self.features1(X), self.features2(X)
        n, c1, h, w = x1.shape
        if x2.shape[-2:] != (h, w):
            x2 = F.interpolate(x2, (h, w), mode="bilinear", align_corners=True)
        c2 = x2.shape[1]
        x = torch.bmm(x1.reshape(n, c1, h * w), x2.reshape(n, c2, h * w).transpose(1, 2)) / (h * w)  # bilinear
        x = F.normalize(torch.sqrt(x.reshape(n, c1 * c2) + 1e-8))
        return self.fc(x)


def _build(vgg: str, pretrained_backbone: bool = False) -> DBCNN:
    if vgg not in VGGS:
        raise ValueError(f"DBCNN vgg must be one of {', '.join(VGGS)}, got {vgg!r}")

    def random_vgg(*args: Any, **kwargs: Any) -> SimpleNamespace:
        # DBCNN keeps only ``.features``: build those alone (the 120M-parameter classifier would only
        # cost seconds of init), initialised as torchvision's VGG initialises its convolutions; none at all
        # when Lite0 takes the branch's place
        if pretrained_backbone:
            return SimpleNamespace(features=nn.Sequential())
        features = make_layers(cfgs[VGGS[vgg]], batch_norm=False)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        return SimpleNamespace(features=features)

    def skip_scnn_weights(net: nn.Module, model_path: str, *args: Any, **kwargs: Any) -> None:
        if model_path != dbcnn_arch.default_model_urls["scnn"]:
            raise RuntimeError(f"DBCNN tried to load {model_path} while building offline")

    offline_torchvision = SimpleNamespace(models=SimpleNamespace(vgg16=random_vgg))
    with (
        mock.patch.object(dbcnn_arch, "torchvision", offline_torchvision),
        mock.patch.object(dbcnn_arch, "load_pretrained_network", skip_scnn_weights),
    ):
        net = DBCNNNet(fc=True, use_bn=True, pretrained=False, pretrained_model_path=None)
    if pretrained_backbone:
        net.features1 = Lite0Trunk()
        net.fc = nn.Linear(Lite0Trunk.out_channels * SCNN_CHANNELS, 1)
        nn.init.kaiming_normal_(net.fc.weight)  # as pyiqa initialises its classifier
        nn.init.zeros_(net.fc.bias)
        net.default_mean = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)
        net.default_std = torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    for p in net.parameters():  # pyiqa freezes both branches for its classifier-only first stage
        p.requires_grad = True
    return net


@register_baseline(
    "dbcnn",
    mode="NR",
    input_size=384,
    citation=CITATION,
    weights=dbcnn_arch.default_model_urls["koniq"],
    pretrained_backbone="the ImageNet branch (Lite0's trunk, 1280 channels, instead of VGG-16); SCNN stays",
    backbone_kwargs=("vgg",),
)
def dbcnn(
    pretrained: bool = False, weights_path: str | None = None, vgg: str = "vgg16", pretrained_backbone: bool = False
) -> nn.Module:
    """DBCNN (``vgg``: vgg16 as in the paper, vgg11 for small runs)."""
    net = _build(vgg, pretrained_backbone)
    if pretrained and weights_path is not None:
        net.load_state_dict(load_state_dict_file(weights_path), strict=True)
    return ScoreModel(net, reference=False)
