"""The one task contract every model of the zoo follows (baselines, EPAIQA stages).

A :class:`BaseTask` collects per-sample test rows (``id``, ``task``, ``edit_type``, ``mos``, ``pred``, …) in its
``test_step``, gathers them across processes at the end of the test epoch, turns them into metrics per task,
logs them as ``<split>/<task>/<metric>`` and hands :func:`epaiqa.train.train` one :class:`TaskResult` per
task through :meth:`BaseTask.task_results`. ``split`` is ``test`` normally; ``untrained`` and ``train`` when
:meth:`BaseTask.evaluating` says what is scored. The untrained metrics travel inside checkpoints, so a resumed
run reports them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L

from epaiqa.distributed import gather_rows
from epaiqa.records.metrics import TaskResult, correlation_result
from epaiqa.records.results import Metrics, is_table

#: checkpoint key of the untrained metrics (per task), carried over when a run resumes
UNTRAINED_KEY = "epaiqa_untrained"


class BaseTask(L.LightningModule):
    """What every model of the zoo shares: test rows → per-task results, metric names, untrained metrics.

    Subclasses append rows with :meth:`add_rows` in ``test_step`` and may override :meth:`summarise` for tasks
    whose metrics are not correlations (grounding, completion).
    """

    #: the stage of training this module does (its lineage entry); baselines have none
    STAGE: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.split = "test"
        self.lineage: list[str] = []
        self.untrained: dict[str, dict[str, Any]] | None = None
        self._rows: list[dict[str, Any]] = []
        self._results: dict[str, TaskResult] = {}

    @contextmanager
    def evaluating(self, split: str) -> Iterator[None]:
        """Log the next test epoch's metrics as ``<split>/<task>/<metric>`` (``untrained``, ``train``)."""
        previous, self.split = self.split, split
        try:
            yield
        finally:
            self.split = previous

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Per-sample outcomes of a test batch (each with at least ``id`` and ``task``)."""
        self._rows.extend(rows)

    def on_test_epoch_start(self) -> None:
        self._rows = []

    def on_test_epoch_end(self) -> None:
        self._results = self.gathered_results()

    def gathered_results(self) -> dict[str, TaskResult]:
        """The results of every process's rows of this epoch, logged as ``<split>/<task>/<metric>``."""
        results = self.summarise_rows(gather_rows(self._rows, key=("task", "id")))
        for task, result in results.items():
            self._log_metrics(task, result.metrics)
            for name, metrics in result.subsets.items():
                self._log_metrics(f"{task}_{name}", metrics)
        return results

    def summarise_rows(self, rows: list[dict[str, Any]]) -> dict[str, TaskResult]:
        """Results per task of all rows of a test epoch (every process's): :meth:`summarise` per task."""
        by_task: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_task.setdefault(row["task"], []).append(row)
        return {task: self.summarise(task, part) for task, part in sorted(by_task.items())}

    def summarise(self, task: str, rows: list[dict[str, Any]]) -> TaskResult:
        """Metrics of one task's rows; correlations of ``pred`` with ``mos`` unless overridden."""
        return correlation_result(rows)

    def _log_metrics(self, task: str, metrics: Metrics) -> None:
        flat = metrics["all"] if is_table(metrics) else metrics
        for key, value in flat.items():
            if key == "n" or isinstance(value, bool) or not isinstance(value, int | float | None):
                continue
            value = float("nan") if value is None else float(value)
            self.log(f"{self.split}/{task}/{key}", value, rank_zero_only=True)

    def task_results(self) -> dict[str, TaskResult]:
        """The results of the last test epoch, per task."""
        return dict(self._results)

    def trained_lineage(self) -> list[str]:
        """The stages this module's weights have been through once it has trained."""
        return [*self.lineage, self.STAGE] if self.STAGE else list(self.lineage)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.untrained is not None:
            checkpoint[UNTRAINED_KEY] = self.untrained

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if UNTRAINED_KEY in checkpoint:
            self.untrained = checkpoint[UNTRAINED_KEY]
