"""WaDIQaM: weighted-average deep image quality measure, NR and FR.

Paper: S. Bosse, D. Maniry, K.-R. Müller, T. Wiegand, W. Samek, "Deep Neural Networks for
No-Reference and Full-Reference Image Quality Assessment", IEEE TIP 2018.
Original code: https://github.com/dmaniry/deepIQA (MIT); the arch is pyiqa's
(``pyiqa/archs/wadiqam_arch.py``, PolyForm Noncommercial 1.0.0), used from the installed package.

From scratch the ten unnormalised conv layers are Kaiming re-initialised: with PyTorch's default
init the activations shrink layer by layer and the net barely learns (measured, NOTES.md).
``train_patch_num=None`` (the demo profiles) samples as many training patches as tile the image once.
"""

from __future__ import annotations

from typing import Any

import torch
from pyiqa.archs.wadiqam_arch import WaDIQaM
from torch import nn

from epaiqa.baselines.common import ScoreModel, kaiming_reinit, load_state_dict_file
from epaiqa.baselines.registry import register_baseline

CITATION = "Bosse et al., Deep Neural Networks for No-Reference and Full-Reference IQA, TIP 2018"
PYIQA_RELEASES = "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/"


class AreaPatchWaDIQaM(WaDIQaM):
    """pyiqa's WaDIQaM, whose training patch count may follow the image size.

    ``train_patch_num=None``: as many random 32² patches as tile the input once (16 at 128 px, 9 at 96 px).
    """

    def __init__(self, metric_type: str, train_patch_num: int | None) -> None:
        super().__init__(metric_type=metric_type, pretrained=False, train_patch_num=train_patch_num or 1)
        self.area_patches = train_patch_num is None

    def _get_random_patches(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        if self.area_patches:
            self.train_patch_num = max(1, (x.shape[-2] // self.patch_size) * (x.shape[-1] // self.patch_size))
        return super()._get_random_patches(x, y)


def _build(metric_type: str, pretrained: bool, weights_path: str | None, train_patch_num: int | None) -> nn.Module:
    net = AreaPatchWaDIQaM(metric_type, train_patch_num)
    if pretrained and weights_path is not None:
        net.load_state_dict(load_state_dict_file(weights_path), strict=True)
    else:
        kaiming_reinit(net)
    return ScoreModel(net, reference=metric_type == "FR")


@register_baseline(
    "wadiqam_nr", mode="NR", input_size=224, citation=CITATION, weights=PYIQA_RELEASES + "WaDIQaM-NR-koniq-aaffea29.pth"
)
def wadiqam_nr(
    pretrained: bool = False, weights_path: str | None = None, train_patch_num: int | None = 32
) -> nn.Module:
    """WaDIQaM-NR: 32×32 patches, weighted average of patch scores."""
    return _build("NR", pretrained, weights_path, train_patch_num)


@register_baseline(
    "wadiqam_fr", mode="FR", input_size=224, citation=CITATION, weights=PYIQA_RELEASES + "WaDIQaM-kadid-f7541ea5.pth"
)
def wadiqam_fr(
    pretrained: bool = False, weights_path: str | None = None, train_patch_num: int | None = 32
) -> nn.Module:
    """WaDIQaM-FR: reference and distorted patch features fused."""
    return _build("FR", pretrained, weights_path, train_patch_num)
