"""The naturalness, harmony and overall subsets and their train/test split (paper §3.2)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
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


def read_splits_file(path: str | Path) -> tuple[Any, list[tuple[str, str]]]:
    """The parsed JSON of a splits file, or None and its ``(field, message)`` problems."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [("file", f"cannot be read ({exc})")]
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [("json", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")]


def _example(ids: Iterable[str]) -> str:
    return repr(sorted(ids)[0])


def check_splits(
    data: Any, known: Collection[str] | None, samples: Mapping[str, PAISample] | None = None
) -> list[tuple[str, str]]:
    """Every ``(field, message)`` problem of parsed splits data.

    Checks the structure (``subsets`` → each of :data:`TASKS` → ``train``/``test`` lists of ids),
    ids listed twice, ids not in ``known`` (the manifest's ids; None skips this), ids in both the train and test
    set of one subset or in one subset's train set and any subset's test set (leakage), and, when
    ``samples`` (id → sample) is given, ids that lack a score their subset needs.
    """
    if not isinstance(data, dict) or not isinstance(data.get("subsets"), dict):
        return [("subsets", "missing or not an object of subsets (is this a splits.json written by `epaiqa prepare`?)")]
    subsets = data["subsets"]
    problems: list[tuple[str, str]] = []
    for task in subsets:
        if task not in TASKS:
            problems.append((f"subsets.{task}", f"unknown subset (known: {', '.join(TASKS)})"))
    parts: dict[tuple[str, str], list[str]] = {}
    for task in TASKS:
        entry = subsets.get(task)
        if not isinstance(entry, dict):
            problems.append((f"subsets.{task}", "missing or not an object with train and test lists"))
            continue
        for part in ("train", "test"):
            field = f"subsets.{task}.{part}"
            ids = entry.get(part)
            if not isinstance(ids, list):
                problems.append((field, "missing or not a list of ids"))
                continue
            bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, (str, int))]
            if bad:
                problems.append((field, f"{len(bad)} entries are not ids (strings), e.g. {bad[0]!r}"))
                continue
            strs = [str(i) for i in ids]
            twice = {i for i, n in Counter(strs).items() if n > 1}
            if twice:
                problems.append((field, f"{len(twice)} ids are listed twice, e.g. {_example(twice)}"))
            unknown = set() if known is None else set(strs) - set(known)
            if unknown:
                problems.append((field, f"{len(unknown)} ids are not in the manifest, e.g. {_example(unknown)}"))
            elif samples is not None:
                needs = SUBSET_NEEDS[task]
                unscored = {i for i in strs if i in samples and any(samples[i].score(d) is None for d in needs)}
                if unscored:
                    problems.append(
                        (field, f"{len(unscored)} ids lack a {'/'.join(needs)} score, e.g. {_example(unscored)}")
                    )
            parts[task, part] = strs
    test_sets = {task: set(ids) for (task, part), ids in parts.items() if part == "test"}
    all_test = set().union(*test_sets.values())
    for (task, part), ids in parts.items():
        if part != "train":
            continue
        leaked = set(ids) & all_test
        if leaked:
            where = ", ".join(t for t, test in test_sets.items() if leaked & test)
            problems.append(
                (
                    f"subsets.{task}.train",
                    f"{len(leaked)} ids are also in a test set ({where}), e.g. {_example(leaked)}",
                )
            )
    return problems


def splits_problems(
    path: str | Path, known: Collection[str] | None, samples: Mapping[str, PAISample] | None = None
) -> list[tuple[str, str]]:
    """Every ``(field, message)`` problem of the splits file at ``path`` (reading, JSON, :func:`check_splits`)."""
    data, problems = read_splits_file(path)
    return problems or check_splits(data, known, samples)


def load_splits(root: str | Path, samples: Sequence[PAISample]) -> dict[str, dict[str, list[str]]]:
    """The subsets of ``ROOT/splits.json``, checked by :func:`check_splits` against the manifest."""
    path = Path(root) / SPLITS
    if not path.is_file():
        raise DataError(f"{path}: not found (run `epaiqa prepare {root}` to build it)")
    data, problems = read_splits_file(path)
    problems = problems or check_splits(data, {s.id for s in samples}, {s.id: s for s in samples})
    if problems:
        lines = [f"{SPLITS}:0: {field}: {message}" for field, message in problems]
        raise DataError(f"{path} is invalid ({len(lines)} problems):", lines)
    subsets = data["subsets"]
    return {t: {p: [str(i) for i in subsets[t][p]] for p in ("train", "test")} for t in TASKS}
