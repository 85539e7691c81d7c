"""NIMA: neural image assessment, an ImageNet CNN with a score head.

Paper: H. Talebi, P. Milanfar, "NIMA: Neural Image Assessment", IEEE TIP 27(8), 2018.
Original code: none released by the authors; pyiqa's arch (``pyiqa/archs/nima_arch.py``,
https://github.com/chaofengc/IQA-PyTorch, PolyForm Noncommercial 1.0.0, itself adapted from
https://github.com/yunxiaoshi/Neural-IMage-Assessment, MIT) is used from the installed package, not copied.

Building offline: ``NIMA.__init__`` calls ``timm.create_model(..., pretrained=True)``. For the
constructor call only, the name ``timm`` inside ``pyiqa.archs.nima_arch`` is replaced by a namespace
whose ``create_model`` forces ``pretrained=False`` (and ``load_pretrained_network`` by a stand-in that
refuses to run).

Choices for training from random init and for this zoo:

- nothing is frozen upstream, so nothing is unfrozen; pyiqa's head is global average pooling and one
  linear layer (no dropout), as in its NIMA.
- ``base_model_name``: ``inception_resnet_v2`` (pyiqa's and the paper's best backbone, 299² input);
  ``resnet18`` or ``mobilenetv3_small_100`` for small runs. Inputs are normalised with the backbone's
  own mean/std (0.5 for Inception, ImageNet's for the others).
- ``num_classes``: the paper predicts a 10-bin score histogram trained with an EMD loss on AVA vote
  counts. Our labels are MOS only, so the default is pyiqa's KonIQ variant, one linear output
  (``num_classes=1``). With ``num_classes=10`` the histogram mean (1..10) is mapped to [0, 1] by
  (m − 1)/9 so it can be trained on normalised MOS.
- pyiqa resizes and centre-crops to the backbone's default size in eval mode only; here the
  datamodule sizes the input in both training and testing, so that eval-only resize is dropped (it
  would change the image scale between training and testing).

``pretrained_backbone=True``: the backbone is the ImageNet EfficientNet-Lite0 of a PyPI package, its whole
convolutional trunk up to the head convolution (1280 channels: the network without its last layer, as the
paper takes its ImageNet CNNs; timm's ``features_only`` would stop at the 320-channel last stage), fine-tuned
with the head as in the paper. Inputs are normalised with Lite0's mean = std = 0.5.
"""

from __future__ import annotations

from unittest import mock

import torch
from pyiqa.archs import nima_arch
from pyiqa.archs.nima_arch import NIMA
from torch import nn

from epaiqa.baselines.common import ScoreModel, load_state_dict_file
from epaiqa.baselines.lite0 import LITE0_MEAN, LITE0_STD, Lite0Trunk
from epaiqa.baselines.offline import refuse_download, timm_without_weights
from epaiqa.baselines.registry import register_baseline
from epaiqa.weights import LITE0_ARCH

CITATION = "Talebi and Milanfar, NIMA: Neural Image Assessment, TIP 2018"


class _Lite0FeatureList(Lite0Trunk):
    """Lite0's trunk answering as a timm ``features_only`` model does (a list, last = the trunk's output)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [super().forward(x)]


class NIMANet(NIMA):
    """pyiqa's NIMA built without downloads; output in [0, 1] units when it predicts a histogram."""

    def __init__(
        self, base_model_name: str = "inception_resnet_v2", num_classes: int = 1, pretrained_backbone: bool = False
    ) -> None:
        with (
            mock.patch.object(nima_arch, "timm", timm_without_weights()),
            mock.patch.object(nima_arch, "load_pretrained_network", refuse_download),
        ):
            super().__init__(
                base_model_name=LITE0_ARCH if pretrained_backbone else base_model_name,
                num_classes=num_classes,
                pretrained=False,
            )
        if pretrained_backbone:
            self.base_model = _Lite0FeatureList()
            linear = self.classifier[2]
            self.classifier[2] = nn.Linear(Lite0Trunk.out_channels, linear.out_features)
            self.default_mean = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)
            self.default_std = torch.tensor(LITE0_STD).view(1, 3, 1, 1)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise only: the datamodule already gives the input its size."""
        return (x - self.default_mean.to(x)) / self.default_std.to(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = super().forward(x)
        if self.num_classes > 1:  # histogram mean 1..num_classes -> [0, 1]
            score = (score - 1.0) / (self.num_classes - 1)
        return score


@register_baseline(
    "nima",
    mode="NR",
    input_size=299,
    citation=CITATION,
    weights=nima_arch.default_model_urls["inception_resnet_v2-koniq"],
    pretrained_backbone="the ImageNet CNN (Lite0's trunk up to its 1280-channel head convolution)",
    backbone_kwargs=("base_model_name",),
)
def nima(
    pretrained: bool = False,
    weights_path: str | None = None,
    base_model_name: str = "inception_resnet_v2",
    num_classes: int = 1,
    pretrained_backbone: bool = False,
) -> nn.Module:
    """NIMA on a timm backbone (inception_resnet_v2 as in pyiqa/the paper, resnet18 for small runs)."""
    net = NIMANet(base_model_name=base_model_name, num_classes=num_classes, pretrained_backbone=pretrained_backbone)
    if pretrained and weights_path is not None:
        net.load_state_dict(load_state_dict_file(weights_path), strict=True)
    return ScoreModel(net, reference=False)
