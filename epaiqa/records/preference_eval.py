"""``epaiqa evaluate --pairs``: a model's per-sample scores against a root's human preferences.

The groups come from ``ROOT/preferences.jsonl`` (a converted preference benchmark); a root without one is grouped
from its pointwise ratings (edits sharing a source and prompt, ranked by MOS). The scores are any predictions file
``epaiqa evaluate`` reads (``epaiqa score --manifest`` output, an external model's CSV). Written as
``preferences.json`` in the run folder, which ``epaiqa report`` turns into the preference and best-of-N tables.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from epaiqa.data.manifest import load_manifest
from epaiqa.data.preferences import PreferenceGroup, read_preferences
from epaiqa.data.schema import PREFERENCES, PAISample
from epaiqa.errors import DataError
from epaiqa.records.imported import read_predictions
from epaiqa.records.preference_metrics import KIND, best_of_n, groups_from_pointwise, preference_accuracy

SHOWN = 5


def human_scores(samples: list[PAISample], dimension: str) -> dict[str, float]:
    """Each sample's rating on ``dimension`` (a paper dimension's MOS or a converted set's own), where it has one."""
    out = {}
    for s in samples:
        value = s.mos.get(dimension) if dimension in s.mos else s.other_mos.get(dimension)
        if value is not None:
            out[s.id] = float(value)
    return out


def load_groups(root: Path, samples: list[PAISample], dimension: str | None) -> tuple[list[PreferenceGroup], str]:
    """The root's preference groups (of ``dimension`` if given) and where they came from."""
    groups = read_preferences(root, {s.id for s in samples})
    if groups:
        chosen = [g for g in groups if dimension is None or g.dimension == dimension]
        if not chosen:
            known = ", ".join(sorted({g.dimension for g in groups}))
            raise DataError(f"{root / PREFERENCES}: no groups of dimension {dimension!r} (it has: {known})")
        return chosen, PREFERENCES
    dimension = dimension or "overall"
    chosen = groups_from_pointwise(samples, dimension, human_scores(samples, dimension))
    if not chosen:
        raise DataError(
            f"{root}: no {PREFERENCES}, and no two {dimension}-rated edits share a source and prompt to compare"
        )
    return chosen, f"pointwise {dimension} ratings (edits sharing a source and prompt)"


def evaluate_preferences(
    root: str | Path,
    predictions: str | Path,
    name: str,
    field: str | None = None,
    dimension: str | None = None,
    epsilon_from: str = "evaluated",
) -> dict[str, Any]:
    """The preference record of a predictions file on a root's groups; every candidate must be scored."""
    root = Path(root)
    samples = load_manifest(root, check_splits=False)
    groups, origin = load_groups(root, samples, dimension)
    scores = read_predictions(predictions, field)
    missing = sorted({c for g in groups for c in g.candidates if c not in scores})
    if missing:
        more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
        shown = ", ".join(map(repr, missing[:SHOWN])) + more
        raise DataError(f"{predictions}: {len(missing)} candidates of {root}'s groups have no score: {shown}")
    edit_types = {s.id: s.edit_type for s in samples}
    try:
        accuracy = preference_accuracy(groups, scores, edit_types, epsilon_from)
    except ValueError as exc:
        raise DataError(f"{root}: {exc}") from None
    bon = {}
    for dim in sorted({g.dimension for g in groups}):
        ours = [g for g in groups if g.dimension == dim and (epsilon_from != "val" or g.split != "val")]
        bon[dim] = best_of_n(ours, scores, human_scores(samples, dim))
    return {
        "kind": KIND,
        "model": name,
        "root": str(root),
        "groups_from": origin,
        "predictions": str(predictions),
        "predictions_sha256": hashlib.sha256(Path(predictions).read_bytes()).hexdigest()[:16],
        "field": field or "score",
        "accuracy": accuracy,
        "best_of_n": bon,
    }
