"""Atomic checkpoints: a killed run never leaves a half-written ``.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from epaiqa.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint I/O, writing to a temporary file renamed into place.

    The temporary file is named by :func:`epaiqa.io.temp_path` (hidden, with the writer's pid), so Lightning's
    listing of ``*.ckpt`` files never sees it, and :func:`epaiqa.io.sweep_stale_temps` removes it after a kill.
    Loading and removal are Lightning's own.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(path, lambda fh: torch.save(checkpoint, fh))
