"""Stand-ins that keep pyiqa constructors off the network while a baseline is built.

Several pyiqa archs fetch ImageNet or upstream weights inside ``__init__``. The baseline files swap
the module-level name that does the fetching, inside that arch module only and only for the duration
of the constructor call (``unittest.mock.patch.object``), for one of these stand-ins. Nothing in
pyiqa, timm or torchvision is changed for the rest of the process.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import timm
import torch

from epaiqa.errors import ConfigError


def timm_without_weights() -> SimpleNamespace:
    """A ``timm`` look-alike whose ``create_model`` always builds with ``pretrained=False``."""

    def create_model(*args: Any, **kwargs: Any) -> torch.nn.Module:
        kwargs["pretrained"] = False
        return timm.create_model(*args, **kwargs)

    return SimpleNamespace(create_model=create_model)


def refuse_download(*args: Any, **kwargs: Any) -> Any:
    """Stand-in for a download/load helper that must never run while building offline."""
    raise RuntimeError(f"a pyiqa constructor tried to fetch weights while building offline (args {args!r})")


class TorchWithLoad(SimpleNamespace):
    """``torch`` with ``load`` replaced: every other attribute is the real ``torch``'s."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from the keys that start with it (e.g. ``module.`` from DataParallel checkpoints)."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def existing_file(path: str, what: str) -> str:
    """``path`` (user directory expanded) if it names an existing file; ConfigError otherwise."""
    if not Path(path).expanduser().is_file():
        raise ConfigError(f"{what}: {path} does not exist; weights are never downloaded at run time")
    return str(Path(path).expanduser())
