"""The baseline registry: ``create_baseline(name)``, ``list_baselines()``, metadata per entry (timm-style).

Each family module registers its entry points with :func:`register_baseline`; the registry imports
the family modules listed in :data:`FAMILIES` on first use, so listing costs one import of each.
"""

from __future__ import annotations

import importlib
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

    @property
    def reference(self) -> bool:
        """Whether the model takes the source image as a reference."""
        return self.mode == "FR"


_REGISTRY: dict[str, BaselineInfo] = {}
_LOADED = False


def register_baseline(
    name: str, *, mode: str, input_size: int, citation: str, weights: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a factory ``f(pretrained: bool, weights_path: str | None, **kw) -> nn.Module``."""
    if mode not in ("NR", "FR"):
        raise ValueError(f"mode must be NR or FR, got {mode!r}")

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"baseline {name!r} is registered twice")
        _REGISTRY[name] = BaselineInfo(name, mode, input_size, citation, weights, factory=factory)
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


def create_baseline(name: str, pretrained: bool = False, weights_path: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a baseline: ``model(img, ref=None) -> scores of shape (B,)``.

    ``pretrained=False`` never touches the network (random init). ``pretrained=True`` loads the
    upstream weights from ``weights_path``; if no such file exists it fails at once, naming the file
    to download and where to put it.
    """
    info = baseline_info(name)
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
