"""SRCC / PLCC (and KRCC, RMSE) overall and per edit type (torchmetrics), as the paper's tables report them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchmetrics.functional import kendall_rank_corrcoef, mean_squared_error, pearson_corrcoef, spearman_corrcoef

from epaiqa.data.schema import EDIT_TYPES

MIN_N = 3


def correlations(preds: torch.Tensor, target: torch.Tensor) -> dict[str, float | None]:
    """SRCC, PLCC, KRCC and RMSE of predictions against MOS; None where undefined (n < 3 or a constant input)."""
    preds, target = preds.detach().double().flatten().cpu(), target.detach().double().flatten().cpu()
    n = int(preds.numel())
    out: dict[str, float | None] = {"srcc": None, "plcc": None, "krcc": None, "rmse": None, "n": n}  # type: ignore[dict-item]
    if n:
        out["rmse"] = float(mean_squared_error(preds, target).sqrt())
    if n < MIN_N or float(preds.std()) == 0.0 or float(target.std()) == 0.0:
        return out
    for name, fn in (("srcc", spearman_corrcoef), ("plcc", pearson_corrcoef), ("krcc", kendall_rank_corrcoef)):
        value = float(fn(preds, target))
        out[name] = None if math.isnan(value) else value
    return out


def correlations_by_edit_type(
    preds: torch.Tensor, target: torch.Tensor, edit_types: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """``{"all": {...}, "style_change": {...}, ...}`` — the four types in the paper's table order."""
    table = {"all": correlations(preds, target)}
    for edit_type in EDIT_TYPES:
        mask = torch.tensor([t == edit_type for t in edit_types], dtype=torch.bool)
        table[edit_type] = correlations(preds[mask], target[mask])
    return table
