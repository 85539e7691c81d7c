"""HyperIQA: a hyper network that predicts the weights of the quality regressor from image content.

Paper: S. Su, Q. Yan, Y. Zhu, C. Zhang, X. Ge, J. Sun, Y. Zhang, "Blindly Assess Image Quality in the
Wild Guided by a Self-Adaptive Hyper Network", CVPR 2020.
Original code: https://github.com/SSL92/hyperIQA (MIT). The arch is
pyiqa's (``pyiqa/archs/hypernet_arch.py``, https://github.com/chaofengc/IQA-PyTorch, PolyForm
Noncommercial 1.0.0), used from the installed package, not copied.

Building offline: ``HyperNet.__init__`` calls ``timm.create_model(..., pretrained=True)``. For the
constructor call only, the name ``timm`` inside ``pyiqa.archs.hypernet_arch`` is replaced by a
namespace whose ``create_model`` forces ``pretrained=False`` (and ``load_pretrained_network`` by a
stand-in that refuses to run).

Choices for training from random init and for this zoo:

- nothing is frozen upstream (the ResNet trains, batch norms included), so nothing is unfrozen.
- ``base_model_name`` picks the timm ResNet (``resnet50`` is the paper's). For another ResNet the
  layers that read the backbone channels — the 1×1 convolutions of the first three
  local-distortion-aware modules, the linear layer of the fourth and the first 1×1 convolution before
  the hyper network — are rebuilt for that backbone's channels; every other size stays the paper's.
- the hyper network generates its target-net weights on the 7×7 map of a 224² input (its sizes only
  divide out at 7×7), so every input is resized to 224² (bilinear, antialiased) in training and
  testing. ``num_crop`` (25, the paper's test protocol) is used only at test time and only for images
  larger than 224² on both sides: then pyiqa's uniform 224² crops are scored and averaged.

``pretrained_backbone=True``: the backbone is the ImageNet EfficientNet-Lite0 of a PyPI package (timm
``tf_efficientnet_lite0``, ``features_only``), fine-tuned with the rest as the paper fine-tunes its ImageNet
ResNet-50, batch norms included. Its stride-4, -8, -16 and -32 stages (24, 40, 112 and 320 channels) take the
places of the ResNet's four stages, with the channel-dependent layers rebuilt as for any other backbone.
Inputs are normalised with Lite0's mean = std = 0.5.
"""

from __future__ import annotations

from unittest import mock

import torch
import torch.nn.functional as F
from pyiqa.archs import hypernet_arch
from pyiqa.archs.hypernet_arch import HyperNet
from torch import nn

from epaiqa.baselines.common import IMAGENET_MEAN, IMAGENET_STD, ScoreModel, load_state_dict_file
from epaiqa.baselines.lite0 import LITE0_MEAN, LITE0_STD, load_lite0
from epaiqa.baselines.offline import refuse_download, timm_without_weights
from epaiqa.baselines.registry import register_baseline
from epaiqa.weights import LITE0_ARCH

CITATION = "Su et al., Blindly Assess Image Quality in the Wild Guided by a Self-Adaptive Hyper Network, CVPR 2020"
INPUT = 224
RESNET50_CHANNELS = [256, 512, 1024, 2048]


class HyperIQANet(HyperNet):
    """pyiqa's HyperNet built without downloads, on any timm ResNet (or ImageNet Lite0), for any input size."""

    def __init__(
        self, base_model_name: str = "resnet50", num_crop: int = 25, pretrained_backbone: bool = False
    ) -> None:
        if pretrained_backbone:
            base_model_name = LITE0_ARCH
        mean, std = (LITE0_MEAN, LITE0_STD) if pretrained_backbone else (IMAGENET_MEAN, IMAGENET_STD)
        with (
            mock.patch.object(hypernet_arch, "timm", timm_without_weights()),
            mock.patch.object(hypernet_arch, "load_pretrained_network", refuse_download),
        ):
            super().__init__(
                base_model_name=base_model_name,
                num_crop=num_crop,
                pretrained=False,
                default_mean=list(mean),
                default_std=list(std),
            )
        if pretrained_backbone:
            load_lite0(self.base_model)
        info = self.base_model.feature_info
        if info.reduction()[1:] != [4, 8, 16, 32]:
            raise ValueError(f"HyperIQA needs a ResNet-like timm backbone (strides 4..32), got {base_model_name!r}")
        channels = info.channels()[1:]
        if channels != RESNET50_CHANNELS:
            self._adapt_to_channels(channels)

    def _adapt_to_channels(self, channels: list[int]) -> None:
        for module, c_in in zip(self.lda_modules[:3], channels[:3], strict=True):
            old = module[0]
            module[0] = nn.Conv2d(c_in, old.out_channels, 1, bias=False)
        last = self.lda_modules[3][2]
        self.lda_modules[3][2] = nn.Linear(channels[3], last.out_features)
        first = self.conv1[0]
        self.conv1[0] = nn.Conv2d(channels[3], first.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.num_crop > 1 and min(x.shape[-2:]) > INPUT:
            return super().forward(x)  # the paper's multi-crop test
        if tuple(x.shape[-2:]) != (INPUT, INPUT):
            x = F.interpolate(x, size=(INPUT, INPUT), mode="bilinear", align_corners=False, antialias=True)
        return self.forward_patch(x)


@register_baseline(
    "hyperiqa",
    mode="NR",
    input_size=INPUT,
    citation=CITATION,
    weights=hypernet_arch.default_model_urls["resnet50-koniq"],
    pretrained_backbone="the feature backbone (ImageNet Lite0's four stages instead of the ResNet's)",
    backbone_kwargs=("base_model_name",),
)
def hyperiqa(
    pretrained: bool = False,
    weights_path: str | None = None,
    base_model_name: str = "resnet50",
    num_crop: int = 25,
    pretrained_backbone: bool = False,
) -> nn.Module:
    """HyperIQA on a timm ResNet (resnet50 as in the paper, resnet18 for small runs)."""
    net = HyperIQANet(base_model_name=base_model_name, num_crop=num_crop, pretrained_backbone=pretrained_backbone)
    if pretrained and weights_path is not None:
        net.load_state_dict(load_state_dict_file(weights_path), strict=True)
    return ScoreModel(net, reference=False)
