"""The demo set's scoring rule and its simulated raters.

True scores follow the artefacts the generator put in (severities in [0, 1]):

- harmony     = 1 + 4·(1 − h)        h: seam hardness, colour/illumination offset, halo
- naturalness = 1 + 4·(1 − n)        n: blur / noise / blockiness / distortion inside the region
- quality     = 0.6·(1 − h) + 0.4·(1 − n) − 0.2·max(0, 0.4 − min(1 − h, 1 − n)), clipped to [0, 1]
  (harmony weighs more, and one very bad sub-dimension drags the whole down, as paper §3.3 observes)
- overall     = 1 + 4·quality if completion = 3; 1.3 + 0.7·quality if 2; 1 + 0.5·quality if 1
  (a not fully completed edit is limited to 1–2 points, appendix C.3)

Each rater r has a bias b_r ~ N(0, 0.25) and adds N(0, 0.5) noise per rating, rounded to the
integer scale; they report the true completion level with probability 0.85 and a neighbouring one
otherwise, and cap overall at 2 when they judge the prompt not fully followed (90% of the time —
the rest are the conflicting ratings cleaning drops). A fraction of rating rows are careless:
uniformly random on every scale (the outliers cleaning removes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATER_NOISE = 0.5
RATER_BIAS = 0.25


@dataclass(frozen=True)
class TrueScores:
    """The rule's noiseless scores of one sample."""

    overall: float
    harmony: float
    naturalness: float
    completion: int


def true_scores(harmony_severity: float, naturalness_severity: float, completion: int) -> TrueScores:
    """Apply the module's scoring rule."""
    h_ok, n_ok = 1.0 - harmony_severity, 1.0 - naturalness_severity
    quality = float(np.clip(0.6 * h_ok + 0.4 * n_ok - 0.2 * max(0.0, 0.4 - min(h_ok, n_ok)), 0.0, 1.0))
    overall = {3: 1.0 + 4.0 * quality, 2: 1.3 + 0.7 * quality, 1: 1.0 + 0.5 * quality}[completion]
    return TrueScores(overall, 1.0 + 4.0 * h_ok, 1.0 + 4.0 * n_ok, completion)


def rater_biases(n_raters: int, seed: int) -> np.ndarray:
    """One fixed bias per rater for the whole dataset."""
    return np.random.default_rng([seed, 7]).normal(0.0, RATER_BIAS, size=n_raters)


def simulate_ratings(
    truth: TrueScores, biases: np.ndarray, careless_rate: float, rng: np.random.Generator
) -> list[dict[str, int]]:
    """One rating row per rater: integer overall/harmony/naturalness (1–5) and completion (1–3)."""
    rows = []
    for bias in biases:
        if rng.random() < careless_rate:
            rows.append(
                {
                    "overall": int(rng.integers(1, 6)),
                    "harmony": int(rng.integers(1, 6)),
                    "naturalness": int(rng.integers(1, 6)),
                    "completion": int(rng.integers(1, 4)),
                }
            )
            continue

        def rate(value: float, b: float = bias) -> int:
            return int(np.clip(np.rint(value + b + rng.normal(0.0, RATER_NOISE)), 1, 5))

        completion = truth.completion
        if rng.random() > 0.85:
            completion = int(np.clip(completion + rng.choice([-1, 1]), 1, 3))
        overall = rate(truth.overall)
        if completion < 3 and rng.random() < 0.9:
            overall = min(overall, 2)
        rows.append(
            {
                "overall": overall,
                "harmony": rate(truth.harmony),
                "naturalness": rate(truth.naturalness),
                "completion": completion,
            }
        )
    return rows
