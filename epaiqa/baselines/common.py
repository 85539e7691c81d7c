"""Pieces shared by the baseline families: the scoring-model interface and weight loading."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ScoreModel(nn.Module):
    """Wrap a network so that every baseline reads ``model(img, ref=None) -> (B,)``; inputs are RGB in [0, 1]."""

    def __init__(self, net: nn.Module, reference: bool) -> None:
        super().__init__()
        self.net = net
        self.reference = reference

    def forward(self, img: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        if self.reference:
            if ref is None:
                raise ValueError("this is a full-reference model: pass the source image as ref")
            out = self.net(img, ref)
        else:
            out = self.net(img)
        return out.reshape(img.shape[0], -1).mean(dim=1)

    def training_loss(
        self,
        img: torch.Tensor,
        ref: torch.Tensor | None,
        target: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The loss its paper trains the network with.

        ``loss_fn(prediction, target)``, unless the network defines ``training_loss(img, ref, target, loss_fn)``
        itself (JOINT trains each branch on the label).
        """
        own = getattr(self.net, "training_loss", None)
        if own is not None:
            return own(img, ref, target, loss_fn)
        return loss_fn(self(img, ref), target)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (safetensors or a ``weights_only`` torch file), unwrapping 'params'/'state_dict'."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("params", "state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def kaiming_reinit(module: nn.Module) -> None:
    """Kaiming-normal re-initialisation of conv/linear weights (deep nets without normalisation train from scratch)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
