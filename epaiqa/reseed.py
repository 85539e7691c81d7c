"""Exact resume: every random generator reseeded at the start of each training epoch from (seed, epoch).

A run resumed from ``last.ckpt`` then repeats exactly what the uninterrupted run did (the sampler's order comes
from :class:`~epaiqa.data.base.EpochSampler`).
"""

from __future__ import annotations

import lightning as L


class DeterministicEpochs(L.Callback):
    """Reseed Python, NumPy and torch at the start of every training epoch from (seed, epoch).

    Dropout and any other draw during an epoch then depend only on the seed and the epoch, not on what ran
    before (an untrained test, a validation loop, a process restart), which makes resuming exact.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        L.seed_everything((self.seed * 1_000_003 + trainer.current_epoch) % 2**32, workers=True, verbose=False)
