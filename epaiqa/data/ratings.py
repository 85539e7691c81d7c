"""Raw-rating cleaning (paper §3.1): ratings.csv → the ``mos`` of each sample.

Rules, in order, per sample:

1. a rating whose completion and overall conflict is dropped whole: completion < 3 requires
   overall ≤ 2 (appendix C.3 limits a not-fully-completed edit to 1–2 points);
2. IQR outliers are removed per dimension for overall, harmony and naturalness: a value outside
   [Q1 − 1.5·IQR, Q3 + 1.5·IQR] of that sample's values (linear-interpolated quartiles); removing a
   rating's overall also removes its completion;
3. overall, harmony and naturalness are the means of what remains (null if nothing remains);
4. completion is the majority vote of the remaining completion levels; a tie goes to the **lower**
   level (an edit counts as fully completed only if a strict plurality says so).

A completion cell must be a whole level 1, 2 or 3: a fractional vote (2.5) could win the majority
and give a ``mos.completion`` the manifest rejects. The file may start with a UTF-8 byte-order mark
(as spreadsheets save it).
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from epaiqa.data.schema import RATINGS, SCORE_RANGES
from epaiqa.errors import DataError

COLUMNS = ("sample_id", "rater_id", "overall", "harmony", "naturalness", "completion")
IQR_DIMENSIONS = ("overall", "harmony", "naturalness")


@dataclass
class Rating:
    """One rater's four scores for one sample (None where the rater gave none)."""

    sample_id: str
    rater_id: str
    overall: float | None
    harmony: float | None
    naturalness: float | None
    completion: float | None


@dataclass
class CleaningStats:
    """How many ratings each rule removed."""

    ratings: int = 0
    conflicting: int = 0
    outliers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(IQR_DIMENSIONS, 0))
    completion_removed_with_overall: int = 0

    def summary(self) -> str:
        """One line for the CLI."""
        out = ", ".join(f"{k} {v}" for k, v in self.outliers.items())
        return (
            f"{self.ratings} ratings: {self.conflicting} dropped for conflicting completion/overall; "
            f"IQR outliers removed: {out} "
            f"(+{self.completion_removed_with_overall} completions removed with their overall)"
        )


def read_ratings(path: str | Path, known_ids: set[str] | None = None) -> list[Rating]:
    """Parse ratings.csv (UTF-8, BOM or not); each bad cell is reported as ``ratings.csv:LINE: field: message``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found ({RATINGS} with columns {', '.join(COLUMNS)} is needed)")
    problems: list[str] = []
    ratings: list[Rating] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing columns {', '.join(missing)} (need {', '.join(COLUMNS)})")
            for row in reader:
                line = reader.line_num
                values: dict[str, float | None] = {}
                for dim, (lo, hi) in SCORE_RANGES.items():
                    cell = (row.get(dim) or "").strip()
                    if cell == "":
                        values[dim] = None
                        continue
                    try:
                        value = float(cell)
                    except ValueError:
                        problems.append(f"{RATINGS}:{line}: {dim}: not a number ({cell!r})")
                        continue
                    if not math.isfinite(value) or not lo <= value <= hi:
                        problems.append(f"{RATINGS}:{line}: {dim}: {cell} is outside the scale [{lo}, {hi}]")
                        continue
                    if dim == "completion" and value != int(value):
                        problems.append(f"{RATINGS}:{line}: completion: must be 1, 2 or 3, got {cell}")
                        continue
                    values[dim] = value
                sample_id = (row.get("sample_id") or "").strip()
                if not sample_id:
                    problems.append(f"{RATINGS}:{line}: sample_id: empty")
                    continue
                if known_ids is not None and sample_id not in known_ids:
                    problems.append(f"{RATINGS}:{line}: sample_id: {sample_id!r} is not in the manifest")
                    continue
                if len(values) == len(SCORE_RANGES):
                    ratings.append(Rating(sample_id, (row.get("rater_id") or "").strip(), **values))  # type: ignore[arg-type]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if problems:
        raise DataError(f"{path} is invalid ({len(problems)} problems):", problems)
    return ratings


def conflicting(rating: Rating) -> bool:
    """Completion below 3 with an overall above 2 breaks the scoring criteria."""
    return rating.completion is not None and rating.overall is not None and rating.completion < 3 and rating.overall > 2


def iqr_inliers(values: list[float]) -> list[bool]:
    """True for values inside [Q1 − 1.5·IQR, Q3 + 1.5·IQR]."""
    if not values:
        return []
    q1, q3 = np.percentile(values, [25, 75])
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    return [bool(lo <= v <= hi) for v in values]


def majority_vote(levels: list[float]) -> float | None:
    """The most frequent level; ties go to the lower level; None if there are no votes."""
    if not levels:
        return None
    counts = Counter(levels)
    best = max(counts.values())
    return float(min(level for level, n in counts.items() if n == best))


def clean_sample(ratings: list[Rating], stats: CleaningStats | None = None) -> dict[str, float | None]:
    """The cleaned mos of one sample from its raw ratings (the four rules of the module doc)."""
    stats = stats if stats is not None else CleaningStats()
    stats.ratings += len(ratings)
    kept = [r for r in ratings if not conflicting(r)]
    stats.conflicting += len(ratings) - len(kept)

    mos: dict[str, float | None] = {}
    completion_ok = [r.completion is not None for r in kept]
    for dim in IQR_DIMENSIONS:
        index = [i for i, r in enumerate(kept) if getattr(r, dim) is not None]
        values = [float(getattr(kept[i], dim)) for i in index]
        inlier = iqr_inliers(values)
        stats.outliers[dim] += inlier.count(False)
        if dim == "overall":
            for i, ok in zip(index, inlier, strict=True):
                if not ok and completion_ok[i]:
                    completion_ok[i] = False
                    stats.completion_removed_with_overall += 1
        survivors = [v for v, ok in zip(values, inlier, strict=True) if ok]
        mos[dim] = float(np.mean(survivors)) if survivors else None
    mos["completion"] = majority_vote([float(r.completion) for r, ok in zip(kept, completion_ok, strict=True) if ok])  # type: ignore[arg-type]
    return mos


def clean_ratings(ratings: list[Rating]) -> tuple[dict[str, dict[str, float | None]], CleaningStats]:
    """Cleaned mos per sample id, and what each rule removed."""
    by_sample: dict[str, list[Rating]] = defaultdict(list)
    for rating in ratings:
        by_sample[rating.sample_id].append(rating)
    stats = CleaningStats()
    return {sid: clean_sample(rs, stats) for sid, rs in by_sample.items()}, stats
