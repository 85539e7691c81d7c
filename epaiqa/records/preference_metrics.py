"""Preference accuracy of a model's scores on ranked groups of edits, as the field's preference benchmarks count it.

Pairs are formed as TIGER-Lab's EditReward-Bench forms them: every two candidates of a group (a 2-candidate group
gives 1 pair, 3 give 3, 4 give 6); the human label of a pair is +1 / -1 / 0 (tie), the model's is the difference
of its two scores. Three pairwise accuracies, each labelled:

- ``acc_tie_calibrated``: accuracy with ties (Deutsch et al. 2023, "Ties matter", as EditReward-Bench's
  ``calc_accuracy_with_ties``): human ties count; the model ties a pair when its score difference is at most ε, and
  ε is the one of the observed |differences| that maximises the accuracy. Where ε is chosen is recorded:
  ``evaluated`` (on the pairs being scored, the benchmark's own protocol, an optimistic upper bound) or ``val``
  (on the groups of the validation split, applied to the others).
- ``acc_strict``: every pair counts and a tie — human or model — is wrong.
- ``acc_without_ties``: pairs that humans tied are left out; a model tie (equal scores) is wrong (EditReward-Bench's
  ``calc_accuracy_without_ties``).

Group accuracy (a group is right when all its pairs are, under the tie-calibrated rule) and strict-ranking accuracy
(the model's order of the whole group equals a human ranking without ties) come per group size; every number also
per dimension and per edit type. Best-of-N (:func:`best_of_n`) reads the same groups.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from epaiqa.data.preferences import PreferenceGroup

#: the record ``epaiqa evaluate --pairs`` writes in its run folder, and its kind
PREFERENCE_RECORD = "preferences.json"
KIND = "preference"
#: where ε of the tie-calibrated accuracy was chosen
EPSILON_FROM = ("evaluated", "val")


@dataclass(frozen=True)
class Pair:
    """Two candidates of a group: the human label (+1 first better, -1 second, 0 tie) and the model's difference."""

    group: str
    human: int
    model: float


def group_pairs(group: PreferenceGroup, scores: Mapping[str, float]) -> list[Pair]:
    """Every two candidates of a group, in candidate order."""
    return [
        Pair(group.id, group.human_order(a, b), scores[a] - scores[b])
        for a, b in itertools.combinations(group.candidates, 2)
    ]


def _agrees(human: int, model: float, epsilon: float) -> bool:
    if abs(model) <= epsilon:
        return human == 0
    return human * model > 0


def tie_calibrated(pairs: Sequence[Pair]) -> tuple[float, float]:
    """The best accuracy with ties over ε ∈ {0} ∪ the observed |differences|, and that ε.

    As EditReward-Bench's ``calc_accuracy_with_ties``, with two differences: pairs of equal |difference| move
    together (sorting by |difference| lets each ε move only its own pairs from "strict" to "tie", O(n log n)), and
    ε = 0 is a candidate too (their scan starts at the smallest difference, so it always ties the closest pair —
    a set without human ties is never scored 100 %). The smallest ε wins a tie of accuracies.
    """
    if not pairs:
        return math.nan, 0.0
    ordered = sorted(pairs, key=lambda p: abs(p.model))
    correct = sum(p.human * p.model > 0 for p in ordered)  # below every difference: no model ties
    best, best_eps = (correct, 0.0) if abs(ordered[0].model) > 0 else (-1, 0.0)  # ε = 0 ties no pair here
    i = 0
    while i < len(ordered):
        eps = abs(ordered[i].model)
        while i < len(ordered) and abs(ordered[i].model) == eps:  # pairs at this |difference| become model ties
            p = ordered[i]
            correct += (p.human == 0) - (p.human * p.model > 0)
            i += 1
        if correct > best:
            best, best_eps = correct, eps
    return best / len(ordered), best_eps


def accuracy_at(pairs: Sequence[Pair], epsilon: float) -> float:
    """Accuracy with ties at a given ε (a model tie when |difference| ≤ ε)."""
    return sum(_agrees(p.human, p.model, epsilon) for p in pairs) / len(pairs) if pairs else math.nan


def strict_accuracy(pairs: Sequence[Pair]) -> float:
    """Every pair counts; right only when humans and model both prefer the same one (any tie is wrong)."""
    return sum(p.human != 0 and p.human * p.model > 0 for p in pairs) / len(pairs) if pairs else math.nan


def accuracy_without_ties(pairs: Sequence[Pair]) -> float:
    """Pairs that humans tied are left out; a model tie is wrong."""
    kept = [p for p in pairs if p.human != 0]
    return sum(p.human * p.model > 0 for p in kept) / len(kept) if kept else math.nan


def _strictly_ranked(group: PreferenceGroup) -> bool:
    return all(len(t) == 1 for t in group.tiers)


def _ranking_right(group: PreferenceGroup, scores: Mapping[str, float]) -> bool:
    order = [t[0] for t in group.tiers]
    return all(scores[a] > scores[b] for a, b in itertools.pairwise(order))


def preference_table(
    groups: Sequence[PreferenceGroup], scores: Mapping[str, float], epsilon: float | None = None
) -> dict[str, Any]:
    """The accuracies of one set of groups; ``epsilon`` given: applied as is, else chosen on these pairs."""
    pairs = [p for g in groups for p in group_pairs(g, scores)]
    if epsilon is None:
        calibrated, epsilon = tie_calibrated(pairs)
    else:
        calibrated = accuracy_at(pairs, epsilon)
    table: dict[str, Any] = {
        "groups": len(groups),
        "pairs": len(pairs),
        "human_ties": sum(p.human == 0 for p in pairs),
        "acc_tie_calibrated": calibrated,
        "epsilon": epsilon,
        "acc_strict": strict_accuracy(pairs),
        "acc_without_ties": accuracy_without_ties(pairs),
    }
    by_group: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_group[p.group].append(p)
    for size in sorted({len(g.candidates) for g in groups}):
        sized = [g for g in groups if len(g.candidates) == size]
        right = [all(_agrees(p.human, p.model, epsilon) for p in by_group[g.id]) for g in sized]
        ranked = [g for g in sized if _strictly_ranked(g)]
        table[f"group_acc_{size}"] = sum(right) / len(right)
        table[f"ranking_acc_{size}"] = sum(_ranking_right(g, scores) for g in ranked) / len(ranked) if ranked else None
        table[f"ranked_groups_{size}"] = len(ranked)
    return table


def preference_accuracy(
    groups: Sequence[PreferenceGroup],
    scores: Mapping[str, float],
    edit_types: Mapping[str, str],
    epsilon_from: str = "evaluated",
) -> dict[str, Any]:
    """Every accuracy per dimension, and per edit type within it, of the groups whose candidates are all scored.

    ``epsilon_from="val"``: ε is chosen on the groups whose ``split`` is ``val`` and those groups are left out of
    the scored ones; ``"evaluated"``: ε is chosen on the scored pairs themselves.
    """
    if epsilon_from not in EPSILON_FROM:
        raise ValueError(f"epsilon_from must be one of {', '.join(EPSILON_FROM)}, got {epsilon_from!r}")
    out: dict[str, Any] = {"epsilon_from": epsilon_from, "dimensions": {}}
    for dimension in sorted({g.dimension for g in groups}):
        ours = [g for g in groups if g.dimension == dimension]
        epsilon = None
        if epsilon_from == "val":
            val = [g for g in ours if g.split == "val"]
            if not val:
                raise ValueError(f"no {dimension} groups of the val split to choose ε on")
            _, epsilon = tie_calibrated([p for g in val for p in group_pairs(g, scores)])
            ours = [g for g in ours if g.split != "val"]
        entry = preference_table(ours, scores, epsilon)
        entry["by_edit_type"] = {}
        for edit_type in sorted({edit_types.get(g.candidates[0], "unknown") for g in ours}):
            part = [g for g in ours if edit_types.get(g.candidates[0], "unknown") == edit_type]
            entry["by_edit_type"][edit_type] = preference_table(part, scores, entry["epsilon"])
        out["dimensions"][dimension] = entry
    return out


def _human_values(group: PreferenceGroup, human_scores: Mapping[str, float] | None) -> dict[str, float] | None:
    if human_scores is None or not all(c in human_scores for c in group.candidates):
        return None
    return {c: float(human_scores[c]) for c in group.candidates}


def _rank(group: PreferenceGroup, candidate: str) -> float:
    """1 + how many candidates humans placed strictly above this one (1 = among the best)."""
    return 1.0 + sum(len(t) for t in group.tiers[: group.rank(candidate)])


def best_of_n(
    groups: Sequence[PreferenceGroup],
    scores: Mapping[str, float],
    human_scores: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """What the model's pick of each group is worth to humans, against a random pick and the oracle's.

    The model picks its highest-scored candidate (a tie at the top: the mean over the tied picks); a random pick is
    the exact mean over the group. The human rank is 1 + the candidates humans put strictly above; the human score
    (the candidates' MOS on the group's dimension, when ``human_scores`` has them all) is averaged the same way.
    """
    rows: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        top = max(scores[c] for c in g.candidates)
        picks = [c for c in g.candidates if scores[c] == top]
        rows["model_rank"].append(sum(_rank(g, c) for c in picks) / len(picks))
        rows["random_rank"].append(sum(_rank(g, c) for c in g.candidates) / len(g.candidates))
        rows["oracle_rank"].append(1.0)
        rows["model_top"].append(sum(g.rank(c) == 0 for c in picks) / len(picks))
        rows["random_top"].append(len(g.tiers[0]) / len(g.candidates))
        if (values := _human_values(g, human_scores)) is not None:
            rows["model_score"].append(sum(values[c] for c in picks) / len(picks))
            rows["random_score"].append(sum(values.values()) / len(values))
            rows["oracle_score"].append(max(values.values()))
    table: dict[str, Any] = {"groups": len(groups), "mean_n": sum(len(g.candidates) for g in groups) / len(groups)}
    table |= {key: sum(v) / len(v) for key, v in rows.items()}
    table["scored_groups"] = len(rows["model_score"])
    return table


def groups_from_pointwise(
    samples: Sequence[Any], dimension: str, human_scores: Mapping[str, float]
) -> list[PreferenceGroup]:
    """Groups of a pointwise set: the rated edits sharing one source and prompt (two or more), ranked by MOS.

    Equal MOS are tied. A pointwise benchmark with several edits per source and prompt (ImagenHub, AURORA's) is
    scored for best-of-N and preference accuracy this way.
    """
    by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s in samples:
        if s.id in human_scores:
            by_key[(s.source, s.prompt)].append(s.id)
    groups = []
    for index, ((_source, _prompt), ids) in enumerate(sorted(by_key.items())):
        if len(ids) < 2:
            continue
        levels = sorted({human_scores[i] for i in ids}, reverse=True)
        tiers = tuple(tuple(i for i in ids if human_scores[i] == level) for level in levels)
        groups.append(PreferenceGroup(f"pointwise_{index}", dimension, tuple(ids), tiers))
    return groups
