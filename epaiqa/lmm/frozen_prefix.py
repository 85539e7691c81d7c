"""The frozen prefix of a vision tower, computed once per image view.

A tower whose first stages are frozen (no trained parameter, batch norms on their pretrained statistics) maps a
view to the same features every epoch: keeping them, keyed by the view's pixels, saves those stages' forward pass
from the second epoch on (``mini``'s recipe trains only Lite0's last stage, so blocks 0–5 are the prefix). The
features are the ones the stages compute under the current autocast setting, so cached and recomputed values
agree to float rounding (a batch of cache misses may be computed in a different batch shape).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import torch


def frozen_prefix_length(stages: Sequence[torch.nn.Module]) -> int:
    """How many leading ``stages`` are frozen: no parameter trains and no batch norm updates its statistics."""
    for count, stage in enumerate(stages):
        if any(p.requires_grad for p in stage.parameters()):
            return count
        if any(m.training for m in stage.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
            return count
    return len(stages)


def view_key(pixels: torch.Tensor) -> bytes:
    """A digest of one view's pixel tensor and the autocast setting it is computed under."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(pixels.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())  # any dtype, bf16 too
    device = pixels.device.type
    if torch.is_autocast_enabled(device):
        digest.update(str(torch.get_autocast_dtype(device)).encode())
    return digest.digest()


def check_capacity(capacity: object) -> int:
    """``capacity`` as a number of views to keep (0: none); ValueError otherwise."""
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
        raise ValueError(f"must be a whole number of views >= 0, got {capacity!r}")
    return capacity


class PrefixCache:
    """At most ``capacity`` views' prefix outputs, least recently used dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = check_capacity(capacity)
        self.entries: OrderedDict[bytes, tuple[torch.Tensor, ...]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> tuple[torch.Tensor, ...] | None:
        """The kept outputs of ``key``'s view (now the most recently used), or None."""
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return value

    def put(self, key: bytes, value: tuple[torch.Tensor, ...]) -> None:
        """Keep ``value`` for ``key``, dropping the least recently used view beyond capacity."""
        self.entries[key] = tuple(t.detach().clone() for t in value)  # a batch's slice would keep the batch
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
