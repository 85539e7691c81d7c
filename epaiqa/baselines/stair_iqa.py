"""Stair-IQA: staircase hierarchical feature fusion on a ResNet.

Paper: W. Sun, X. Min, D. Tu, S. Ma, G. Zhai, "Blind Quality Assessment for in-the-Wild Images via
Hierarchical Feature Fusion and Iterative Mixed Database Training", IEEE JSTSP 2023.
Original code: https://github.com/sunwei925/StairIQA (no licence file in the repository).
Written here from the paper and the structure of ``models/stairIQA_resnet.py``: every ResNet stage
starts a side branch (1×1 → 3×3 → 1×1 convolutions, stride 2 from the second stage) that descends
stage by stage, adding the backbone feature at each; the final stage output plus all branch outputs
is average-pooled and regressed by Linear(C, 128) → Linear(128, 1). Single-database training: the
one-head variant. ``depth`` 50 is the paper's; 18 is the small demo profile.

``pretrained_backbone=True``: the staircase runs on the ImageNet EfficientNet-Lite0 of a PyPI package
instead of a ResNet (the paper fine-tunes an ImageNet ResNet-50; everything trains). Its four stages are
Lite0's stride-4, -8, -16 and -32 stages (blocks 1, 2, 3–4, and 5–6 plus the head convolution: 24, 40,
112 and 1280 channels) after a stride-2 stem (stem convolution and block 0, 16 channels), so every side
branch step halves the resolution (a ResNet's first stage keeps it: stride 1 there); the head reads the
1280 head-convolution features. Inputs are normalised with Lite0's mean = std = 0.5.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn

from epaiqa.baselines.common import IMAGENET_MEAN, IMAGENET_STD, ScoreModel, load_state_dict_file
from epaiqa.baselines.lite0 import LITE0_MEAN, LITE0_STD, Lite0Trunk
from epaiqa.baselines.registry import register_baseline

CITATION = "Sun et al., Blind Quality Assessment for in-the-Wild Images via Hierarchical Feature Fusion ..., JSTSP 2023"


def _side(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in // 4, 1, bias=False),
        nn.Conv2d(c_in // 4, c_in // 4, 3, stride=stride, padding=1, bias=False),
        nn.Conv2d(c_in // 4, c_out, 1, bias=False),
    )


def _lite0_stages() -> tuple[nn.Module, list[nn.Module], list[int]]:
    """ImageNet Lite0 cut into a stride-2 stem and four stages (strides 4, 8, 16, 32) and their channels."""
    lite0 = Lite0Trunk()
    b = lite0.blocks
    stem = nn.Sequential(OrderedDict(conv_stem=lite0.conv_stem, bn1=lite0.bn1, block0=b[0]))
    stages = [b[1], b[2], nn.Sequential(b[3], b[4]), nn.Sequential(b[5], b[6], lite0.conv_head, lite0.bn2)]
    return stem, stages, [16, 24, 40, 112, lite0.out_channels]


class StairIQA(nn.Module):
    """ResNet (or ImageNet Lite0) backbone with staircase side branches and a two-layer linear quality head."""

    def __init__(self, depth: int = 50, hidden: int = 128, pretrained_backbone: bool = False) -> None:
        super().__init__()
        if pretrained_backbone:
            self.stem, stages, channels = _lite0_stages()
            strides, mean, std = [2, 2, 2, 2], LITE0_MEAN, LITE0_STD
        else:
            if depth not in (18, 34, 50):
                raise ValueError(f"Stair-IQA depth must be 18, 34 or 50, got {depth}")
            resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
            self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
            stages = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4]
            expansion = 4 if depth == 50 else 1
            channels = [64] + [c * expansion for c in (64, 128, 256, 512)]
            strides, mean, std = [1, 2, 2, 2], IMAGENET_MEAN, IMAGENET_STD
        self.stages = nn.ModuleList(stages)
        # branches[j][k]: branch started before stage j, its step into stage k (k >= j)
        self.branches = nn.ModuleList(
            nn.ModuleList(_side(channels[k], channels[k + 1], stride=strides[k]) for k in range(j, len(self.stages)))
            for j in range(len(self.stages))
        )
        self.head = nn.Sequential(nn.Linear(channels[-1], hidden), nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.stem((img - self.mean) / self.std)
        open_branches: list[torch.Tensor] = []
        for k, stage in enumerate(self.stages):
            # every open branch takes one step down, fed with its state plus the current feature
            open_branches = [self.branches[j][k - j](state + x) for j, state in enumerate(open_branches)] + [
                self.branches[k][0](x)
            ]
            x = stage(x)
        x = x + sum(open_branches)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@register_baseline(
    "stair_iqa",
    mode="NR",
    input_size=320,
    citation=CITATION,
    weights="torchvision's ImageNet ResNet-50 (resnet50-11ad3fa6.pth) or a trained Stair-IQA state dict",
    pretrained_backbone="the staircase backbone (ImageNet Lite0's stages instead of the ResNet's)",
    backbone_kwargs=("depth",),
)
def stair_iqa(
    pretrained: bool = False, weights_path: str | None = None, depth: int = 50, pretrained_backbone: bool = False
) -> nn.Module:
    """Stair-IQA on a ResNet of the given depth; ``weights_path`` may hold a backbone or a full model."""
    net = StairIQA(depth=depth, pretrained_backbone=pretrained_backbone)
    if pretrained and weights_path is not None:
        state = load_state_dict_file(weights_path)
        if any(k.startswith("fc.") or k.startswith("layer1.") for k in state):  # an ImageNet ResNet
            resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
            resnet.load_state_dict(state)
            net.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
            net.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        else:
            net.load_state_dict(state)
    return ScoreModel(net, reference=False)
