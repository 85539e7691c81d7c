"""What a run scores, and its answers as clients get them: every key the scorer gives, plus ``dimensions``.

A scorer's answer is passed through as it is (``score``/``level``/``task`` of a baseline, the per-dimension
objects of an EPAIQA stage or a best competitor, ``bbox``, ``bbox_source``, ``explanation``, and whatever
calibrated keys it adds — ``score_1_5``, ``reward``, ``scale`` …); the server adds ``dimensions``: each dimension
the run knows as ``{"score", "level", ...}`` in one place, whichever kind of run it is. Numbers that are not
finite become null (JSON has no NaN).
"""

from __future__ import annotations

import math
from typing import Any

from epaiqa.serve.parse import REWARD

#: a baseline's own keys of its one dimension, and the calibrated keys a scorer may add beside them
TOP_KEYS = ("score", "level")
CALIBRATED = ("score_raw", "score_1_5", REWARD)


def dimensions_of(scorer: Any) -> tuple[str, ...]:
    """The dimensions a scorer answers.

    An EPAIQA stage's own list, a best competitor's sub-scores and overall, a baseline's one task.
    """
    if hasattr(scorer, "picks"):
        return (*scorer.picks, scorer.task)
    if hasattr(scorer, "dimensions"):
        return tuple(scorer.dimensions)
    return (str(scorer.task),)


def main_dimension(scorer: Any) -> str | None:
    """The dimension a scorer's ``score`` stands for (None for a grounding-only run, which scores none)."""
    task = str(getattr(scorer, "task", ""))
    return task if task in dimensions_of(scorer) else None


def kind_of(scorer: Any) -> str:
    """baseline, lmm or regressor (a best competitor)."""
    if hasattr(scorer, "picks"):
        return "regressor"
    return "lmm" if hasattr(scorer, "stage_name") else "baseline"


def describe(scorer: Any) -> dict[str, Any]:
    """The model part of ``GET /info``."""
    record = scorer.record
    info: dict[str, Any] = {
        "model": record.model,
        "kind": kind_of(scorer),
        "task": main_dimension(scorer),
        "dimensions": list(dimensions_of(scorer)),
        "run": str(scorer.folder),
        "lineage": list(record.lineage or []),
    }
    if hasattr(scorer, "stage_name"):
        info["stage"] = scorer.stage_name
        info["explains"] = scorer.stage_name == "explain"
    else:
        info["explains"] = False
    return info


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, through dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def shape(answer: dict[str, Any], known: tuple[str, ...], wanted: tuple[str, ...] | None) -> dict[str, Any]:
    """A scorer's answer with ``dimensions`` added; with ``wanted``, the other dimensions' objects left out."""
    out = dict(answer)
    dims: dict[str, Any] = {}
    for name in known:
        value = answer.get(name)
        if isinstance(value, dict):
            dims[name] = value
        elif answer.get("task") == name and "score" in answer:  # a baseline: its one dimension at the top
            dims[name] = {key: answer[key] for key in (*TOP_KEYS, *CALIBRATED) if key in answer}
    if wanted is not None:
        for name in known:
            if name not in wanted and isinstance(out.get(name), dict):
                del out[name]
        dims = {name: value for name, value in dims.items() if name in wanted}
    out["dimensions"] = dims
    return finite(out)


def rank_value(result: dict[str, Any], by: str, main: str | None) -> float | None:
    """The number a result is ranked by (None where it has none).

    A dimension's score, or the reward: the answer's own, else its main dimension's (an EPAIQA stage gives one per
    dimension).
    """
    if by == REWARD:
        value = result.get(REWARD)
        if value is None and main is not None:
            value = (result["dimensions"].get(main) or {}).get(REWARD)
    else:
        value = (result["dimensions"].get(by) or {}).get("score")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def ranking(results: list[dict[str, Any]], by: str, main: str | None) -> list[int]:
    """Candidate indices best first (higher is better; ties keep their order; unscored candidates come last)."""
    values = [rank_value(r, by, main) for r in results]
    return sorted(range(len(results)), key=lambda i: (values[i] is None, -(values[i] or 0.0), i))
