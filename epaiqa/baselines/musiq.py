"""MUSIQ: multi-scale image quality transformer on patches of several resolutions.

Paper: J. Ke, Q. Wang, Y. Wang, P. Milanfar, F. Yang, "MUSIQ: Multi-scale Image Quality Transformer",
ICCV 2021.
Original code: https://github.com/google-research/google-research/tree/master/musiq (Apache-2.0,
TensorFlow/JAX). The arch is pyiqa's PyTorch port (``pyiqa/archs/musiq_arch.py``,
https://github.com/chaofengc/IQA-PyTorch, PolyForm Noncommercial 1.0.0), used from the installed
package, not copied.

Building offline: ``MUSIQ(pretrained=False)`` fetches nothing; no patch is needed.

Choices for training from random init and for this zoo:

- the paper initialises the transformer from ImageNet pre-training; here it is random and nothing
  is frozen (upstream freezes nothing either).
- pyiqa cuts the image into multi-scale patches in eval mode only and expects its training data
  loader to do it in training; here the network does it in both modes, from the [0, 1] image scaled to
  [−1, 1] as the official code does, so the datamodule feeds plain images.
- one linear output (``num_class=1``, the KonIQ setting: our labels are MOS, not AVA histograms).
- defaults are the paper's: 32-px patches, hidden 384, MLP 1152, 6 heads, 14 layers, scales with
  longer side 224 and 384 plus the native resolution (so ``num_scales`` = scales + 1), 10×10 hashed
  spatial grid. All of these are kwargs; a small CPU profile shrinks the transformer and the scales.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyiqa.archs import musiq_arch
from pyiqa.archs.musiq_arch import MUSIQ
from pyiqa.data.multiscale_trans_util import get_multiscale_patches
from torch import nn

from epaiqa.baselines.common import ScoreModel, load_state_dict_file
from epaiqa.baselines.registry import register_baseline

CITATION = "Ke et al., MUSIQ: Multi-scale Image Quality Transformer, ICCV 2021"


class MUSIQNet(MUSIQ):
    """pyiqa's MUSIQ that takes images (not pre-cut patches) in training too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # pyiqa's eval path patches the image itself; do the same in training
            x = get_multiscale_patches((x - 0.5) * 2, **self.data_preprocess_opts)
        return super().forward(x)


@register_baseline(
    "musiq", mode="NR", input_size=384, citation=CITATION, weights=musiq_arch.default_model_urls["koniq10k"]
)
def musiq(
    pretrained: bool = False,
    weights_path: str | None = None,
    patch_size: int = 32,
    hidden_size: int = 384,
    mlp_dim: int = 1152,
    num_heads: int = 6,
    num_layers: int = 14,
    longer_side_lengths: Sequence[int] = (224, 384),
    use_native_resolution: bool = True,
    spatial_pos_grid_size: int = 10,
) -> nn.Module:
    """MUSIQ; the defaults are the paper's KonIQ model."""
    net = MUSIQNet(
        patch_size=patch_size,
        num_class=1,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        num_layers=num_layers,
        num_scales=len(longer_side_lengths) + int(use_native_resolution),
        spatial_pos_grid_size=spatial_pos_grid_size,
        pretrained=False,
        pretrained_model_path=None,
        longer_side_lengths=list(longer_side_lengths),
        max_seq_len_from_original_res=-1 if use_native_resolution else None,
    )
    if pretrained and weights_path is not None:
        net.load_state_dict(load_state_dict_file(weights_path), strict=True)
    return ScoreModel(net, reference=False)
