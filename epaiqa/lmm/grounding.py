"""Stage-1 grounding answers (paper §4.1, appendix E.1): parsing ⟨x, y, z1, z2⟩ and comparing boxes.

Boxes are centre/size fractions of the image, as :attr:`~epaiqa.data.schema.PAISample.bbox`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

Box = tuple[float, float, float, float]

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SEP = r"\s*,\s*"
_BRACKETS = {"(": ")", "[": "]", "<": ">", "⟨": "⟩", "": ""}
#: The whole answer: optionally E.1's lead-in, four numbers in matching brackets (or none), an optional stop.
_ANSWER = re.compile(
    r"\s*(?:the\s+four\s+coefficients\s+representing\s+the\s+editing\s+area\s+are\s*:\s*)?"
    r"(?P<open>[(\[<⟨]?)\s*" + _SEP.join([_NUMBER] * 4) + r"\s*(?P<close>[)\]>⟩]?)\s*\.?\s*",
    re.IGNORECASE,
)


def parse_bbox(text: str) -> Box | None:
    """⟨x, y, z1, z2⟩ from a stage-1 answer, or None if the answer is malformed in any way.

    Accepted: "The four coefficients representing the editing area are: (x, y, z1, z2)." or just the
    bracketed numbers, each number in [0, 1]. Anything else — missing or extra numbers, signs, exponents,
    unbalanced brackets, other text — gives None; this never raises.
    """
    if not isinstance(text, str):
        return None
    match = _ANSWER.fullmatch(text)
    if match is None or _BRACKETS[match["open"]] != match["close"]:
        return None
    values = tuple(float(v) for v in match.groups()[1:5])
    if not all(0.0 <= v <= 1.0 for v in values):
        return None
    return values  # type: ignore[return-value]


def _corners(box: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two centre/size boxes (0 when both are empty)."""
    ax0, ay0, ax1, ay1 = _corners(a)
    bx0, by0, bx1, by1 = _corners(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def centre_error(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance between the two boxes' centres, in image fractions."""
    return math.hypot(float(a[0]) - float(b[0]), float(a[1]) - float(b[1]))
