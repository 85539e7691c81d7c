"""A run's output scale, and the monotonic map from its raw score to the 1–5 rating scale and a [0, 1] reward.

A baseline regresses the MOS without bounds (a briefly trained one can answer 6.2 on a 1–5 scale); a best
competitor's forest answers within the MOS it was fitted on; an EPAIQA stage's Q-Align expectation lies on 1–5 by
construction. Every run's ``calibration.json`` says which, and for regressing models holds VQEG's 4-parameter
logistic fitted from the run's raw validation predictions to their MOS:

- **why logistic, not isotonic**: the logistic is strictly increasing and smooth, so the 1–5 score ranks samples
  exactly as the raw score does (SRCC unchanged, no ties introduced) and a small change of the input gives a small
  change of the reward; isotonic regression is a step function that ties whole ranges of inputs (useless as a
  reward's gradient signal and for best-of-N) and overfits a validation split of a few dozen samples.
- the fit is constrained increasing with both asymptotes inside the scale; the result is clipped to the scale;
- ``reward = (score_1_5 - lo) / (hi - lo)`` in [0, 1] (lo, hi = 1, 5 for the paper's dimensions).

Too few validation samples (under :data:`MIN_FIT`) or a fit that fails: the raw score clipped to the scale
(``method: clip``), said so.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epaiqa.io import atomic_write_json

CALIBRATION = "calibration.json"
MIN_FIT = 8
METHODS = ("logistic4", "clip", "identity")


@dataclass(frozen=True)
class Calibration:
    """The map of one task's raw scores onto its rating scale ``[lo, hi]``."""

    task: str
    lo: float
    hi: float
    method: str
    raw_scale: str
    params: list[float] = field(default_factory=list)
    fitted_on: str | None = None
    n: int = 0

    def rating(self, raw: float) -> float:
        """The raw score on the rating scale (monotonic in ``raw``; clipped to ``[lo, hi]``)."""
        value = float(raw)
        if self.method == "logistic4":
            bottom, span, mid, slope = self.params
            z = float(np.clip(-(value - mid) / slope, -700.0, 700.0))
            value = bottom + span / (1.0 + math.exp(z))
        return min(max(value, self.lo), self.hi)

    def reward(self, raw: float) -> float:
        """The rating mapped linearly onto [0, 1]: lo → 0, hi → 1."""
        return (self.rating(raw) - self.lo) / (self.hi - self.lo)

    def describe(self) -> dict[str, Any]:
        """What :func:`scale_fields` prints: the raw scale, the map and where it was fitted."""
        how = {
            "logistic4": f"VQEG 4-parameter logistic fitted on {self.n} samples of the {self.fitted_on}",
            "clip": "the raw score clipped to the scale (no calibration fitted)",
            "identity": "the raw score is on the rating scale already",
        }[self.method]
        return {"raw": self.raw_scale, "rating": [self.lo, self.hi], "map": how, "reward": "(rating - lo) / (hi - lo)"}


def fit_calibration(
    raw: Any, mos: Any, task: str, lo: float, hi: float, fitted_on: str, raw_scale: str = "unbounded regression"
) -> Calibration:
    """An increasing 4-parameter logistic from raw predictions to MOS, asymptotes within ``[lo, hi]``.

    Falls back to clipping (``method: clip``) with fewer than :data:`MIN_FIT` samples, constant inputs or a fit
    that does not converge.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x, y = np.asarray(raw, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    clip = Calibration(task, lo, hi, "clip", raw_scale, fitted_on=fitted_on, n=int(x.size))
    if x.size < MIN_FIT or float(np.std(x)) == 0.0 or float(np.std(y)) == 0.0:
        return clip

    def curve(v: np.ndarray, bottom: float, span: float, mid: float, slope: float) -> np.ndarray:
        return bottom + span / (1.0 + np.exp(np.clip(-(v - mid) / slope, -700.0, 700.0)))

    spread = float(np.std(x))
    bottom = min(max(float(y.min()), lo), hi)
    p0 = [bottom, min(max(float(y.max()) - bottom, 0.0), hi - lo), float(np.median(x)), spread]  # inside the bounds
    bounds = ([lo, 0.0, -np.inf, spread * 1e-3], [hi, hi - lo, np.inf, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            params, _ = curve_fit(curve, x, y, p0=p0, bounds=bounds, maxfev=20000)
        except (RuntimeError, ValueError):
            return clip
    if not np.all(np.isfinite(params)):
        return clip
    return Calibration(task, lo, hi, "logistic4", raw_scale, [float(p) for p in params], fitted_on, int(x.size))


def write_calibrations(folder: Path, calibrations: dict[str, Calibration]) -> Path:
    """``FOLDER/calibration.json``: one entry per task."""
    return atomic_write_json(folder / CALIBRATION, {task: asdict(c) for task, c in calibrations.items()})


def read_calibrations(folder: Path) -> dict[str, Calibration]:
    """The run's calibrations by task (empty for a run trained before runs recorded them)."""
    path = folder / CALIBRATION
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {task: Calibration(**entry) for task, entry in data.items()}
    except (OSError, ValueError, TypeError) as exc:
        from epaiqa.errors import DataError

        raise DataError(f"{path}: not a calibration this project wrote ({exc})") from None


def scale_fields(raw: float, calibration: Calibration) -> dict[str, Any]:
    """The three values of one score: raw, on the rating scale, as a reward — and the scale that says what they are."""
    return {
        "score_raw": raw,
        "score_1_5": round(calibration.rating(raw), 6),
        "reward": round(calibration.reward(raw), 6),
        "scale": calibration.describe(),
    }


def run_calibration(folder: Path, task: str, method: str, raw_scale: str) -> Calibration:
    """The run's calibration of ``task``, else (a run trained before runs recorded one) ``method`` on the scale."""
    from epaiqa.data.schema import SCORE_RANGES

    found = read_calibrations(folder).get(task)
    if found is not None:
        return found
    lo, hi = SCORE_RANGES[task]
    return Calibration(task, float(lo), float(hi), method, raw_scale)
