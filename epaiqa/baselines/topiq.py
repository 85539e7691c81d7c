"""TOPIQ (CFANet): top-down semantic-to-distortion attention, NR and FR.

Paper: C. Chen, J. Mo, J. Hou, H. Wu, L. Liao, W. Sun, Q. Yan, W. Lin, "TOPIQ: A Top-down Approach
from Semantics to Distortions for Image Quality Assessment", IEEE TIP 2024.
Original code: https://github.com/chaofengc/IQA-PyTorch (``pyiqa/archs/topiq_arch.py``), licence:
PolyForm Noncommercial 1.0.0 (pyiqa) — the arch is used from the installed pyiqa, not copied.

From scratch (``pretrained=False``) the ResNet backbone is random, so its batch-norm layers are left
trainable: pyiqa freezes them (``fix_bn``) because it assumes ImageNet weights, which would freeze
the random residual branches at their initial scale.
"""

from __future__ import annotations

from pyiqa.archs.topiq_arch import CFANet
from torch import nn

from epaiqa.baselines.common import ScoreModel, load_state_dict_file
from epaiqa.baselines.registry import register_baseline

CITATION = "Chen et al., TOPIQ: A Top-down Approach from Semantics to Distortions for IQA, TIP 2024"
PYIQA_RELEASES = "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/"


class CFANetFromScratch(CFANet):
    """CFANet whose backbone batch norms train (only used with random backbone weights)."""

    def fix_bn(self, model: nn.Module) -> None:
        """Leave batch norms trainable: a random backbone has no statistics worth freezing."""


def _build(use_ref: bool, pretrained: bool, weights_path: str | None, backbone: str) -> nn.Module:
    cls = CFANet if pretrained else CFANetFromScratch
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
)
def topiq_nr(pretrained: bool = False, weights_path: str | None = None, backbone: str = "resnet50") -> nn.Module:
    """TOPIQ-NR on a timm ResNet (``backbone``: resnet50 as in the paper, resnet18 for small runs)."""
    return _build(False, pretrained, weights_path, backbone)


@register_baseline(
    "topiq_fr",
    mode="FR",
    input_size=384,
    citation=CITATION,
    weights=PYIQA_RELEASES + "cfanet_fr_kadid_res50-2c4cc61d.pth",
)
def topiq_fr(pretrained: bool = False, weights_path: str | None = None, backbone: str = "resnet50") -> nn.Module:
    """TOPIQ-FR: the source image is the reference."""
    return _build(True, pretrained, weights_path, backbone)
