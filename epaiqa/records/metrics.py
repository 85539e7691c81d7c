"""SRCC / PLCC (and KRCC, RMSE, logistic PLCC) overall and per edit type, as the paper's tables report them.

A test epoch's outcome per task is a :class:`TaskResult`: its metrics (:func:`correlation_result` for the scored
tasks), the completion-3 subset of the overall task, and the per-sample rows.

``plcc`` is Pearson's r of the raw predictions; ``plcc_logistic`` is Pearson's r after the 4-parameter logistic
mapping of predictions to MOS that VQEG prescribes (fitted on the scored samples themselves, as IQA papers do).
Both are kept: the tables say which one they show.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit
from torchmetrics.functional import kendall_rank_corrcoef, mean_squared_error, pearson_corrcoef, spearman_corrcoef

from epaiqa.data.schema import EDIT_TYPES, UNKNOWN_EDIT_TYPE
from epaiqa.records.results import COMPLETION3, Metrics

MIN_N = 3


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG's monotonic 4-parameter logistic: ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / (abs(b4) + 1e-12))) + b2


def logistic_plcc(preds: np.ndarray, target: np.ndarray) -> float | None:
    """PLCC after fitting :func:`logistic4` from predictions to MOS; None if the fit does not converge.

    The fit may come out decreasing; the PLCC then takes the sign of that direction, so predictions that fall as
    MOS rises keep a negative value, as their SRCC does.
    """
    p0 = [float(target.max()), float(target.min()), float(np.mean(preds)), float(np.std(preds)) or 1.0]
    with warnings.catch_warnings(), np.errstate(over="ignore"):  # exp saturates far from the midpoint: harmless
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            params, _ = curve_fit(logistic4, preds, target, p0=p0, maxfev=20000)
        except (RuntimeError, ValueError):
            return None
        mapped = logistic4(preds, *params)
    if not np.all(np.isfinite(mapped)) or float(np.std(mapped)) == 0.0:
        return None
    direction = 1.0 if params[0] >= params[1] else -1.0
    return direction * float(np.corrcoef(mapped, target)[0, 1])


def correlations(preds: torch.Tensor, target: torch.Tensor) -> dict[str, float | None]:
    """SRCC, PLCC, KRCC, RMSE and logistic PLCC against MOS; None where undefined (n < 3 or a constant input)."""
    preds, target = preds.detach().double().flatten().cpu(), target.detach().double().flatten().cpu()
    n = int(preds.numel())
    out: dict[str, float | None] = dict.fromkeys(("srcc", "plcc", "plcc_logistic", "krcc", "rmse"))
    out["n"] = n
    if n:
        out["rmse"] = float(mean_squared_error(preds, target).sqrt())
    if n < MIN_N or float(preds.std()) == 0.0 or float(target.std()) == 0.0:
        return out
    for name, fn in (("srcc", spearman_corrcoef), ("plcc", pearson_corrcoef), ("krcc", kendall_rank_corrcoef)):
        value = float(fn(preds, target))
        out[name] = None if math.isnan(value) else value
    if n >= 5:  # four parameters need a fifth point to leave a residual
        out["plcc_logistic"] = logistic_plcc(preds.numpy(), target.numpy())
    return out


def correlations_by_edit_type(
    preds: torch.Tensor, target: torch.Tensor, edit_types: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """``{"all": {...}, "style_change": {...}, ...}`` — the four types in the paper's table order.

    Samples of a converted benchmark without an edit type add an ``unknown`` entry (only when there are some).
    """
    table = {"all": correlations(preds, target)}
    present = (UNKNOWN_EDIT_TYPE,) if UNKNOWN_EDIT_TYPE in edit_types else ()
    for edit_type in (*EDIT_TYPES, *present):
        mask = torch.tensor([t == edit_type for t in edit_types], dtype=torch.bool)
        table[edit_type] = correlations(preds[mask], target[mask])
    return table


#: row keys that hold text (explanations): kept out of predictions.csv, written to explanations.jsonl
TEXT_KEYS = ("prompt", "explanation", "reference_answer", "answer")


@dataclass
class TaskResult:
    """One task's outcome of a test epoch: metrics, the completion-3 subset (overall task), per-sample rows."""

    metrics: Metrics
    rows: list[dict[str, Any]] = field(default_factory=list)
    subsets: dict[str, Metrics] = field(default_factory=dict)

    @property
    def predictions(self) -> list[dict[str, Any]]:
        """The rows without their texts."""
        return [{k: v for k, v in r.items() if k not in TEXT_KEYS} for r in self.rows]

    @property
    def generations(self) -> list[dict[str, Any]]:
        """The rows that carry generated text (stage 3), else empty."""
        return [r for r in self.rows if "explanation" in r]


def correlation_result(rows: list[dict[str, Any]]) -> TaskResult:
    """SRCC/PLCC/KRCC/RMSE of ``pred`` against ``mos`` per edit type.

    For rows with a prompt completion (the overall task) the completion-3 subset too, apart from the all-sample
    score.
    """

    def table(part: list[dict[str, Any]]) -> Metrics:
        preds = torch.tensor([float(r["pred"]) for r in part], dtype=torch.float64)
        mos = torch.tensor([float(r["mos"]) for r in part], dtype=torch.float64)
        return correlations_by_edit_type(preds, mos, [r["edit_type"] for r in part])

    result = TaskResult(table(rows), rows)
    if rows and all(r.get("completion") is not None for r in rows):
        result.subsets[COMPLETION3] = table([r for r in rows if r["completion"] == 3])
    return result
