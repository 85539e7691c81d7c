"""A best-competitor run (Table 3) as a scorer: its picked runs' harmony and naturalness, then its regressor.

The run folder holds ``regressor.joblib`` (the fitted sklearn estimator) and, in its record, the picked baseline
runs; both sub-scores come from those runs' own scorers (their views, sizes and bbox rules), the overall score
from the regressor on them — as the run's test predicted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch

from epaiqa.data.levels import bin_level
from epaiqa.data.schema import SCORE_RANGES, PAISample
from epaiqa.errors import DataError
from epaiqa.records.calibration import Calibration, run_calibration, scale_fields
from epaiqa.records.results import RunRecord, read_record
from epaiqa.scoring.base import ManifestScoring
from epaiqa.scoring.baseline import Scorer

#: the sub-scores a best competitor regresses the overall score on
SUBTASKS = ("harmony", "naturalness")
#: the fitted regressor in a best-competitor run folder
MODEL_FILE = "regressor.joblib"


@dataclass
class RegressorScorer(ManifestScoring):
    """A best competitor: the picked runs' sub-scores → the fitted regressor → the overall score."""

    folder: Path
    record: RunRecord
    regressor: Any
    picks: dict[str, Scorer]
    task: str = "overall"

    def to(self, device: str | torch.device) -> RegressorScorer:
        """Move the picked runs' models to a device; returns the scorer."""
        for scorer in self.picks.values():
            scorer.to(device)
        return self

    def _overall(self, features: np.ndarray) -> list[float]:
        return [float(v) for v in self.regressor.predict(features)]

    def _level(self, value: float) -> str:
        return bin_level(value, SCORE_RANGES["overall"])

    @functools.cached_property
    def scale(self) -> Calibration:
        """The forest answers within the MOS it was fitted on: clipped onto 1–5 (read once)."""
        return run_calibration(self.folder, "overall", "clip", "random-forest regression of the fitted MOS")

    def __call__(
        self, source: str | Path, edited: str | Path, prompt: str = "", bbox: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """Score one source/edited pair: the picked runs' sub-scores and the regressor's overall score."""
        parts = {task: self.picks[task](source, edited, prompt, bbox) for task in SUBTASKS}
        overall = self._overall(np.asarray([[parts[t]["score"] for t in SUBTASKS]], dtype=np.float64))[0]
        first = parts[SUBTASKS[0]]
        return {
            "model": self.record.model,
            **{
                t: {"score": parts[t]["score"], "level": parts[t]["level"], "model": parts[t]["model"]}
                for t in SUBTASKS
            },
            "overall": {"score": overall, "level": self._level(overall), **scale_fields(overall, self.scale)},
            "bbox": first["bbox"],
            "bbox_source": first["bbox_source"],
            "run": str(self.folder),
        }

    def manifest_rows(self, root: str | Path, samples: Sequence[PAISample]) -> list[dict[str, Any]]:
        """Scores-file lines of a batch: ``id``, the overall ``score``/``level``, and both sub-scores."""
        preds = {t: self.picks[t].predict(root, samples, "overall", batch_size=len(samples)) for t in SUBTASKS}
        features = np.asarray([[preds[t][s.id] for t in SUBTASKS] for s in samples], dtype=np.float64)
        rows = []
        for s, x, value in zip(samples, features, self._overall(features), strict=True):
            row = {"id": s.id, "task": "overall", "score": value, "level": self._level(value)}
            row |= {"score_1_5": self.scale.rating(value), "reward": self.scale.reward(value)}
            rows.append(row | {t: float(v) for t, v in zip(SUBTASKS, x, strict=True)})
        return rows


def load_regressor_scorer(
    folder: Path, record: RunRecord, load_run: Callable[[str | Path], ManifestScoring]
) -> RegressorScorer:
    """The regressor of a best-competitor run folder and scorers of the runs it picked.

    ``load_run`` makes a run folder a scorer (:func:`~epaiqa.scoring.load.load_scorer`, passed in by it: loading
    a picked run is loading any run, and the loader sits above its implementations).
    """
    path = folder / MODEL_FILE
    if not path.is_file():
        raise DataError(f"{folder}: no {MODEL_FILE} (a best-competitor run that did not finish?)")
    try:
        regressor = joblib.load(path)
    except Exception as exc:  # joblib/pickle raise many kinds on a damaged file
        raise DataError(f"{path}: not a loadable regressor ({type(exc).__name__}: {exc})") from None
    picks = (record.data or {}).get("picks") or {}
    missing = [t for t in SUBTASKS if t not in picks]
    if missing:
        raise DataError(f"{folder}: the record names no picked run for {', '.join(missing)}")
    scorers = {}
    for task in SUBTASKS:
        if read_record(picks[task]["run"]).kind == "imported":
            raise DataError(
                f"{folder}: the picked {task} run {picks[task]['run']} holds imported predictions, not a model: this "
                "best competitor scored the dataset it was built on and cannot score new images"
            )
        scorer = load_run(picks[task]["run"])
        if not isinstance(scorer, Scorer):
            raise DataError(f"{folder}: the picked {task} run {picks[task]['run']} is not a baseline run")
        scorers[task] = scorer
    return RegressorScorer(folder, record, regressor, scorers)
