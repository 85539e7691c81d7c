"""Scores ↔ the five quality level words (paper §4.2, following Q-Align)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: Level words from worst to best; bin k of [0, 5) is LEVELS[k].
LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
#: Q-Align weights of the level words (1 = bad .. 5 = excellent).
LEVEL_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)
#: What the five level bins divide (``data.levels.range``): ``nominal``, the rating scale's own 1–5 (the default:
#: a level word means the same score on every split and dataset, as the raters' scale does); ``observed``, the
#: training split's lowest to highest MOS per task (Q-Align's choice: all five words in use when MOS cluster).
LEVEL_RANGES: tuple[str, ...] = ("nominal", "observed")
NOMINAL_SPAN: tuple[float, float] = (1.0, 5.0)


def scale_to_five(score: float, lo: float, hi: float) -> float:
    """Map a score in [lo, hi] to [0, 5): 5·(s − lo)/(hi − lo), the top end kept inside the last bin."""
    if hi <= lo:
        raise ValueError(f"score range must have hi > lo, got [{lo}, {hi}]")
    if not lo <= score <= hi:
        raise ValueError(f"score {score} is outside its range [{lo}, {hi}]")
    return min(5.0 * (score - lo) / (hi - lo), math.nextafter(5.0, 0.0))


def score_to_level(score: float, lo: float = 1.0, hi: float = 5.0) -> str:
    """The level word of a score: [0,1) bad, [1,2) poor, [2,3) fair, [3,4) good, [4,5) excellent."""
    return LEVELS[int(scale_to_five(score, lo, hi))]


def bin_level(score: float, span: tuple[float, float] = NOMINAL_SPAN) -> str:
    """The level word of a score binned over ``span`` (a score outside it, e.g. a test MOS, is clipped into it)."""
    lo, hi = span
    return score_to_level(min(max(score, lo), hi), lo, hi)


def level_position(score: float, span: tuple[float, float] = NOMINAL_SPAN) -> float:
    """Where a score lies on the level scale: 1 = the middle of bad's bin … 5 = excellent's (0.5 to 5.5 at the ends)."""
    lo, hi = span
    return scale_to_five(min(max(score, lo), hi), lo, hi) + 0.5


def soft_levels(position: float, sigma: float) -> list[float]:
    """Probabilities of the five level words: a Gaussian of width ``sigma`` (in levels) around ``position``.

    The soft target of DeQA-Score's distribution training: a score near a bin's edge weighs both neighbours, so two
    samples of one level word but different scores get different targets (a hard label tells them apart nowhere).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    weights = [math.exp(-((w - position) ** 2) / (2 * sigma**2)) for w in LEVEL_WEIGHTS]
    total = sum(weights)
    return [w / total for w in weights]


def observed_span(scores: Iterable[float | None]) -> tuple[float, float]:
    """The lowest and highest of the scores (Q-Align's binning range); the nominal span when they do not differ."""
    values = [float(v) for v in scores if v is not None]
    if not values or min(values) == max(values):
        return NOMINAL_SPAN
    return (min(values), max(values))


def level_index(level: str) -> int:
    """0 for 'bad' .. 4 for 'excellent' (case and surrounding space ignored)."""
    word = level.strip().lower()
    if word not in LEVELS:
        raise ValueError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    return LEVELS.index(word)


def level_to_score(level: str) -> float:
    """The Q-Align weight of a level word: bad → 1 .. excellent → 5."""
    return LEVEL_WEIGHTS[level_index(level)]


def expected_score(probabilities: Sequence[float]) -> float:
    """Q-Align score: the level probabilities (bad..excellent) dotted with weights 1..5."""
    if len(probabilities) != len(LEVELS):
        raise ValueError(f"need {len(LEVELS)} level probabilities, got {len(probabilities)}")
    return float(sum(p * w for p, w in zip(probabilities, LEVEL_WEIGHTS, strict=True)))
