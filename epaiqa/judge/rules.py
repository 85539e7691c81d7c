"""The explanation judge's rules (paper §5.1, appendix F): sample types, verdict parsing, the vote and the scores.

- **Types.** Type 1: prompt completion < 3 (the standard answer analyses completion only). Type 2: completion 3,
  naturalness or harmony < 3, and overall < 3. Type 3: completion 3, naturalness and harmony > 3, overall > 3.
  Any other sample (e.g. completion 3 with a score of exactly 3) is in no type: left out, and counted.
- **Verdict.** The judge answers one JSON object ``{"PA": 0|1|2, "LNA": 0|1|2|null, "GHA": 0|1|2|null,
  "Overall": 0|1|2}``; prose or a code fence around it is tolerated, anything else is a parse failure (its raw text
  is kept). For Type 1 LNA and GHA are not scored, so whatever the judge put there is ignored; for Types 2 and 3 they
  must be numbers.
- **Vote.** Five repetitions per sample; per criterion the most frequent score among the valid verdicts, and on a
  tie the highest of the tied scores (the paper's 2/2/1 rule: the highest score that appears twice).
- **Score.** Per criterion the mean of the voted scores over the samples it applies to, divided by 2: 1.0 means full
  marks on every sample, the scale of the paper's Table 4 ([0, 1]). A sample with no valid verdict is left out of the
  means and counted as unjudged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from epaiqa.llm.replies import json_objects

CRITERIA: tuple[str, ...] = ("PA", "LNA", "GHA", "Overall")
#: the criteria that need the standard answer's naturalness / harmony analysis (left out for Type 1)
ANALYSES: tuple[str, ...] = ("LNA", "GHA")
JUDGE_TYPES: tuple[int, ...] = (1, 2, 3)
REPETITIONS = 5
SCORES = (0, 1, 2)
#: the voted 0–2 scores are divided by this to give Table 4's [0, 1]
FULL_MARKS = 2


def judge_type(
    completion: float | None, naturalness: float | None, harmony: float | None, overall: float | None
) -> int | None:
    """Appendix F's type of a test sample (1, 2 or 3), or None when it falls in none."""
    if completion is None:
        return None
    if completion < 3:
        return 1
    if naturalness is None or harmony is None or overall is None:
        return None
    if (naturalness < 3 or harmony < 3) and overall < 3:
        return 2
    if naturalness > 3 and harmony > 3 and overall > 3:
        return 3
    return None


def criteria_of(kind: int) -> tuple[str, ...]:
    """The criteria scored for a sample type: PA and Overall for Type 1, all four otherwise."""
    return ("PA", "Overall") if kind == 1 else CRITERIA


def _score(value: Any) -> int | None:
    """0, 1 or 2 from an int, an integral float or a digit string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value.strip())
    if isinstance(value, (int, float)) and value in SCORES:
        return int(value)
    return None


def parse_verdict(text: str, kind: int) -> dict[str, int] | None:
    """The scores of a judge's reply for a sample of type ``kind``, or None when the reply is no valid verdict.

    The first JSON object in the reply with a PA key is the verdict (keys matched regardless of case). It must give
    every criterion of the type 0, 1 or 2; LNA and GHA of a Type-1 sample are ignored.
    """
    for candidate in json_objects(text):
        by_name = {str(k).strip().lower(): v for k, v in candidate.items()}
        if "pa" not in by_name:
            continue
        scores = {c: _score(by_name.get(c.lower())) for c in criteria_of(kind)}
        if any(v is None for v in scores.values()):
            return None
        return scores  # type: ignore[return-value]
    return None


def vote(scores: Sequence[int]) -> int | None:
    """The most frequent score; on a tie the highest of the tied ones (2/2/1 → the higher pair). None if empty."""
    if not scores:
        return None
    counts = Counter(scores)
    top = max(counts.values())
    return max(score for score, count in counts.items() if count == top)


def voted_scores(verdicts: Sequence[Mapping[str, int] | None], kind: int) -> dict[str, int | None]:
    """Per criterion of the type, the vote over the valid verdicts (None when none is valid)."""
    valid = [v for v in verdicts if v is not None]
    return {c: vote([v[c] for v in valid]) for c in criteria_of(kind)}


def final_scores(samples: Sequence[Mapping[str, int | None]]) -> tuple[dict[str, float | None], dict[str, int]]:
    """Per criterion the mean voted score over the samples that have one, divided by 2, and how many those are."""
    scores: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for criterion in CRITERIA:
        values = [s[criterion] for s in samples if s.get(criterion) is not None]
        counts[criterion] = len(values)
        scores[criterion] = sum(values) / len(values) / FULL_MARKS if values else None  # type: ignore[arg-type]
    return scores, counts
