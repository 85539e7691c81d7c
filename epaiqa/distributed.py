"""Collecting per-sample test outputs across processes (DDP / FSDP / DeepSpeed test loops)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def gather_rows(rows: list[dict[str, Any]], key: tuple[str, ...] = ("id", "task")) -> list[dict[str, Any]]:
    """Every process's rows, once each, sorted by ``key``.

    Distributed samplers split the test set across processes and repeat a few samples to even the shards; the
    repeats are dropped by ``key``. Without an initialised process group the rows are only de-duplicated.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shards: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, rows)
        rows = [row for shard in shards for row in shard]
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(tuple(row[k] for k in key), row)
    return [unique[k] for k in sorted(unique, key=lambda k: tuple(map(str, k)))]
