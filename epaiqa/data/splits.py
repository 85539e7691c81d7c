"""The naturalness, harmony and overall subsets and their train/test split (paper §3.2)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from epaiqa.data.schema import DIMENSIONS, SPLITS, TASKS, PAISample
from epaiqa.errors import DataError
from epaiqa.io import atomic_write_json

#: The scores a sample needs to enter each subset (the overall subset needs all four).
SUBSET_NEEDS: dict[str, tuple[str, ...]] = {
    "naturalness": ("naturalness",),
    "harmony": ("harmony",),
    "overall": DIMENSIONS,
}


def subset_members(samples: Sequence[PAISample]) -> dict[str, list[str]]:
    """Ids of the samples whose needed scores survived cleaning, per subset."""
    return {
        task: [s.id for s in samples if all(s.score(d) is not None for d in needs)]
        for task, needs in SUBSET_NEEDS.items()
    }


def make_splits(
    samples: Sequence[PAISample], seed: int = 0, test_fraction: float = 0.2, group_by: str = "source"
) -> dict[str, Any]:
    """Split each subset into train/test so that no subset's train set meets any subset's test set.

    One global test set is drawn, in a seeded random order of groups (``group_by="source"`` keeps
    all edits of one source image on the same side; ``"id"`` splits samples freely, as the paper
    does): a group joins the test set while every subset it belongs to is below its
    ``test_fraction`` target, then a second pass tops up subsets still short. Every subset's test
    set is its intersection with the global test set, so disjointness holds by construction.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if group_by not in ("source", "id"):
        raise ValueError(f"group_by must be 'source' or 'id', got {group_by!r}")
    members = {task: set(ids) for task, ids in subset_members(samples).items()}
    groups: dict[str, list[str]] = defaultdict(list)
    for s in samples:
        groups[s.source if group_by == "source" else s.id].append(s.id)
    keys = sorted(groups)
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    target = {t: round(test_fraction * len(ids)) for t, ids in members.items()}
    count = dict.fromkeys(members, 0)
    test: set[str] = set()

    def contribution(key: str) -> dict[str, int]:
        return {t: sum(i in members[t] for i in groups[key]) for t in members}

    for strict in (True, False):
        for key in order:
            if groups[key][0] in test:
                continue
            c = contribution(key)
            wanted = [t for t in members if c[t] > 0]
            if not wanted:
                continue
            if strict:
                take = all(count[t] + c[t] <= target[t] for t in wanted)
            else:
                take = any(count[t] < target[t] for t in wanted)
            if take:
                test.update(groups[key])
                for t in wanted:
                    count[t] += c[t]
    subsets = {t: {"train": sorted(ids - test), "test": sorted(ids & test)} for t, ids in members.items()}
    return {"seed": seed, "test_fraction": test_fraction, "group_by": group_by, "subsets": subsets}


def write_splits(root: str | Path, splits: dict[str, Any]) -> Path:
    """Write ``ROOT/splits.json`` atomically."""
    return atomic_write_json(Path(root) / SPLITS, splits)


def load_splits(root: str | Path, samples: Sequence[PAISample]) -> dict[str, dict[str, list[str]]]:
    """The subsets of ``ROOT/splits.json``, checked against the manifest and for leakage."""
    path = Path(root) / SPLITS
    if not path.is_file():
        raise DataError(f"{path}: not found (run `epaiqa prepare {root}` to build it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        subsets = data["subsets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a valid splits file ({exc})") from None
    known = {s.id for s in samples}
    problems: list[str] = []
    all_test: set[str] = set()
    for task in TASKS:
        for part in ("train", "test"):
            ids = (subsets.get(task) or {}).get(part) if isinstance(subsets, dict) else None
            if not isinstance(ids, list):
                problems.append(f"{SPLITS}: subsets.{task}.{part}: missing or not a list of ids")
                continue
            unknown = [i for i in ids if str(i) not in known]
            if unknown:
                problems.append(
                    f"{SPLITS}: subsets.{task}.{part}: {len(unknown)} ids not in the manifest, e.g. {unknown[0]!r}"
                )
            if part == "test":
                all_test.update(map(str, ids))
    if not problems:
        for task in TASKS:
            leaked = set(map(str, subsets[task]["train"])) & all_test
            if leaked:
                problems.append(
                    f"{SPLITS}: subsets.{task}.train: {len(leaked)} ids are in a test set, e.g. {sorted(leaked)[0]!r}"
                )
    if problems:
        raise DataError(f"{path} is invalid:", problems)
    return {t: {p: [str(i) for i in subsets[t][p]] for p in ("train", "test")} for t in TASKS}
