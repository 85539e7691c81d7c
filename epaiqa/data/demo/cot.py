"""Template chain-of-thought explanations of demo samples, naming the artefacts really put in."""

from __future__ import annotations

from typing import Any

import numpy as np

from epaiqa.data.demo.edits import ARTEFACT_PHRASES
from epaiqa.data.levels import score_to_level


def _degree(severity: float) -> str:
    return "strong" if severity > 0.66 else "moderate" if severity > 0.33 else "slight"


def _offset_phrase(offset: list[float]) -> str:
    mean = float(np.mean(offset))
    tint = ("red", "green", "blue")[int(np.argmax(np.abs(np.asarray(offset) - mean)))]
    brightness = "brighter" if mean > 0 else "darker"
    return f"{brightness} than its surroundings with a {tint} cast"


def completion_text(params: dict[str, Any]) -> str:
    """Whether the edit did what the prompt asked."""
    level = params["completion"]
    if level == 3:
        return f"The prompt is fully followed: {params['done']}."
    if level == 2:
        return f"The prompt is only partly followed: {params['done']} only faintly, the change is incomplete."
    return f"The prompt is not followed: it asked that {params['done']}, but the region is essentially unchanged."


def harmony_text(params: dict[str, Any], harmony: float) -> str:
    """How the region blends into the rest of the image."""
    h = params["harmony_severity"]
    if h < 0.15:
        body = "The edited region blends smoothly into the surrounding image, with no visible seam or colour shift."
    else:
        seam = "a hard, clearly visible seam" if h > 0.6 else "a noticeable seam" if h > 0.3 else "a faint seam"
        body = (
            f"The boundary of the edited region shows {seam}, and the region looks "
            f"{_offset_phrase(params['offset'])} ({_degree(h)} mismatch)."
        )
        if params["halo"] != 0.0:
            body += " A bright or dark outline runs along the edit boundary."
    return f"{body} So the harmony is {score_to_level(harmony)}."


def naturalness_text(params: dict[str, Any], naturalness: float) -> str:
    """What the edited region itself looks like."""
    n = params["naturalness_severity"]
    if n < 0.1:
        body = "Inside the edited region the content looks clean, with no visible artefact."
    else:
        body = f"Inside the edited region there is {_degree(n)} {ARTEFACT_PHRASES[params['artefact']]}."
    return f"{body} So the local naturalness is {score_to_level(naturalness)}."


def overall_text(overall: float) -> str:
    """The closing sentence of the paper's stage-3 answers."""
    return f"Therefore, the overall editing quality level of the image is {score_to_level(overall)}."


def explain(params: dict[str, Any], mos: dict[str, float | None]) -> dict[str, str] | None:
    """The four CoT sections from the generation parameters and the cleaned scores, if all are known."""
    if any(mos.get(k) is None for k in ("overall", "harmony", "naturalness", "completion")):
        return None
    return {
        "completion": completion_text(params),
        "harmony": harmony_text(params, mos["harmony"]),  # type: ignore[arg-type]
        "naturalness": naturalness_text(params, mos["naturalness"]),  # type: ignore[arg-type]
        "overall": overall_text(mos["overall"]),  # type: ignore[arg-type]
    }
