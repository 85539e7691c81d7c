"""Where a run's wall time goes: set-up, waiting for data, computing, evaluating (``results.json``'s ``timing``).

:class:`PhaseTimes` is a Lightning callback that splits every loop (train, validation, test) into the time spent
*waiting for a batch* (the data loader: decoding, resizing, collating; plus Lightning's per-batch bookkeeping) and
the time spent *inside the batch* (forward, backward, optimiser step, metric updates). :func:`train` adds the
phases around the loops (building the data and the model, writing the record). The sums are wall seconds on the
job's own clock; they are what ``python -m benchmarks.matrix`` prints per job.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L


class PhaseTimes(L.Callback):
    """Wall seconds per phase of one run: ``<loop>_data`` (waiting for batches) and ``<loop>_compute`` per loop.

    A loop's waiting time runs from the loop's (or epoch's) start, or the end of its previous batch, to the start
    of the next batch; its compute time from a batch's start to its end. :meth:`phase` times the rest (set-up,
    writing). Validation inside ``fit`` (the sanity check included) counts as ``validation``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._mark: dict[str, float] = {}
        self._started = time.perf_counter()

    def _wait_from_now(self, loop: str) -> None:
        self._mark[loop] = time.perf_counter()

    def _batch_start(self, loop: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{loop}_data"] += now - self._mark.get(loop, now)
        self._mark[loop] = now

    def _batch_end(self, loop: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{loop}_compute"] += now - self._mark.get(loop, now)
        self._mark[loop] = now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def record(self) -> dict[str, float]:
        """The phases in seconds (rounded to ms), ``total`` (since construction) and ``other`` (the rest)."""
        total = time.perf_counter() - self._started
        out = {name: round(value, 3) for name, value in sorted(self.seconds.items())}
        out["other"] = round(max(total - sum(self.seconds.values()), 0.0), 3)
        out["total"] = round(total, 3)
        return out

    # the hooks: every loop's epoch start begins a wait; each batch splits into wait and compute
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._wait_from_now("train")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._batch_start("train")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._batch_end("train")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._wait_from_now("validation")

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._batch_start("validation")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._batch_end("validation")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._wait_from_now("train")  # a validation inside a training epoch is not the next batch's wait

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._wait_from_now("test")

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._batch_start("test")

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._batch_end("test")
