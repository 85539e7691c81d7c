"""Multi-GPU strategies of the LMM stages: Lightning's FSDP and DeepSpeed, configured from Hydra.

``trainer=ddp`` needs nothing here; ``trainer=fsdp`` wraps (and, optionally, checkpoints) the transformer blocks
named by their import paths; ``trainer=deepspeed`` uses Lightning's DeepSpeed strategies, which need the
``deepspeed`` package (``pip install 'epaiqa[deepspeed]'``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from hydra.utils import get_class
from lightning.pytorch.strategies import FSDPStrategy

from epaiqa.errors import ConfigError


def _classes(paths: list[str], key: str) -> set[type]:
    classes = set()
    for path in paths:
        try:
            classes.add(get_class(path))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"trainer.strategy.{key}: cannot import {path!r} ({exc})") from None
    return classes


def fsdp_strategy(
    layers: list[str],
    sharding_strategy: str = "FULL_SHARD",
    activation_checkpointing: bool = True,
    state_dict_type: str = "full",
    **kwargs: Any,
) -> FSDPStrategy:
    """Lightning's :class:`FSDPStrategy` wrapping each of ``layers`` (import paths of module classes).

    ``activation_checkpointing`` recomputes those blocks' activations in the backward pass. ``state_dict_type``
    ``full`` writes one checkpoint file that ``init_from`` and single-GPU runs can read.
    """
    blocks = _classes(list(layers), "layers")
    return FSDPStrategy(
        auto_wrap_policy=blocks,
        activation_checkpointing_policy=blocks if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type=state_dict_type,
        **kwargs,
    )


def check_strategy(strategy: Any) -> None:
    """Fail with a clear message when the configured strategy needs a package that is not installed."""
    name = strategy if isinstance(strategy, str) else (strategy or {}).get("_target_", "")
    if "deepspeed" in str(name).lower() and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"trainer.strategy={name!r} needs the deepspeed package: pip install 'epaiqa[deepspeed]' (GPU machines)"
        )
