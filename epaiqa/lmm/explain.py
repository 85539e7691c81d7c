"""Reading a stage-3 explanation (appendix E.3): the prompt-completion verdict and the overall-level readout."""

from __future__ import annotations

import re

from epaiqa.lmm.instructions import ANSWER_TEMPLATES, COMPLETION_LEVELS

#: The answer text before the overall level word: "Therefore, the overall editing quality level of the image is".
OVERALL_HEAD = ANSWER_TEMPLATES["overall"].split("{}")[0].rstrip()

_COMPLETION = re.compile(
    r"prompt completion is\s+(" + "|".join(re.escape(level) for level in COMPLETION_LEVELS) + r")", re.IGNORECASE
)
_HEAD = re.compile(re.escape(OVERALL_HEAD), re.IGNORECASE)


def parse_completion(text: str) -> int | None:
    """Completion level 1..3 of "The prompt completion is <level>." in an explanation; ``None`` if absent."""
    match = _COMPLETION.search(text)
    if match is None:
        return None
    return [level.lower() for level in COMPLETION_LEVELS].index(match.group(1).lower()) + 1


def overall_prefix(explanation: str) -> tuple[str, bool]:
    """The answer up to the overall level word, for Q-Align scoring after a generated explanation.

    When the explanation contains "…the overall editing quality level of the image is", the text up to its last
    occurrence is the prefix (``True``: the model wrote the sentence itself). Otherwise the sentence is appended
    to the explanation (``False``), so every sample gets a score read at the same position of the same sentence.
    """
    matches = list(_HEAD.finditer(explanation))
    if matches:
        end = matches[-1].end()
        return explanation[:end], True
    text = explanation.strip()
    return (f"{text} {OVERALL_HEAD}" if text else OVERALL_HEAD), False
