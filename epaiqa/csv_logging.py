"""A CSV metric log that survives resumes: every attempt's rows in one ``metrics.csv``, tagged by attempt.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when a logger opens its folder again — a resume in
place (``ckpt_path=<run>/checkpoints/last.ckpt``) lost the epochs before the kill, and a resume that failed
(a corrupt checkpoint) lost the whole file. Here the file is kept and appended to; each row carries ``attempt``
(1 for the first run into the folder, 2 for the first resume, …). Steps re-run after the last checkpoint appear
once per attempt: the row of the latest attempt is the one the finished run went through.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from epaiqa.errors import DataError

#: the column naming which run into the folder logged a row
ATTEMPT = "attempt"


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer that appends to an existing ``metrics.csv`` and tags each row with its attempt."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self.attempt = 1 + self._read_previous()

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes ``metrics.csv`` here; the earlier attempts' rows are kept instead."""

    def _read_previous(self) -> int:
        """Adopt the existing file's columns; drop a last line cut short by a kill. Returns its last attempt."""
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return 0
        with open(path, "rb") as fh:
            data = fh.read()
        if data and not data.endswith(b"\n"):  # a row cut short by a kill: its numbers may be cut too
            with open(path, "wb") as fh:
                fh.write(data[: data.rfind(b"\n") + 1])
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                self.metrics_keys = sorted(reader.fieldnames or [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}: not a CSV metric log ({exc}); move it away to start a new one") from None
        attempts = [int(r[ATTEMPT]) for r in rows if (r.get(ATTEMPT) or "").isdigit()]
        return max(attempts, default=1 if rows else 0)

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        """Lightning's row, plus the attempt that logged it."""
        super().log_metrics({**metrics_dict, ATTEMPT: self.attempt}, step)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` keeps every attempt's rows (:class:`AppendingExperimentWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:  # type: ignore[override]
        """The writer, created on first use (on rank zero; the other ranks get Lightning's dummy)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment  # type: ignore[return-value]
