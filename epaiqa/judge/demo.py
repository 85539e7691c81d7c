"""``epaiqa judge RUN --judge-model demo``: an offline judge of explanations, for the synthetic demo set only.

The demo set's reference explanations are written from the artefacts that were really put into each edit
(:mod:`epaiqa.data.demo.cot`): the completion verdict, the seam's degree, the region brighter or darker, its tint,
a halo, the naturalness artefact and its degree, and a level word per dimension. This judge reads those
*facets* out of every generated explanation and out of its reference with the same rules, and scores agreement
per facet. Beside each rate stands the rate of a model that always answers the facet's most common reference
value (the majority rate), so a rate can be read against what saying the same thing every time gets.

A facet is scored on the samples whose reference states it (a seam's tint only where there is a seam; the
artefact's degree only where there is an artefact); an explanation that states nothing for a facet its
reference states counts as disagreeing, and the share of such answers is reported per facet. Level words are
also scored within one level. Real data has no generator to read facets from: the judge refuses a root that
is not a demo root, and real explanations are judged by an LLM (appendix F, :mod:`epaiqa.judge.run`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from epaiqa.data.levels import LEVELS
from epaiqa.errors import DataError
from epaiqa.io import atomic_write_json
from epaiqa.judge.run import JUDGE, read_explanations, run_identity

#: the judge's name in ``judge.json`` and the report
DEMO_JUDGE = "demo"
#: what ``judge.json`` holds (the LLM judge's holds appendix F's criteria)
DEMO_KIND = "demo_facets"
#: facets that are level words (also scored within one level)
LEVEL_FACETS = ("harmony_level", "naturalness_level", "overall_level")

_LEVEL = "(" + "|".join(LEVELS) + ")"
_COMPLETION_WORDS = {"non-compliant": "1", "partly-compliant": "2", "fully compliant": "3"}
_COMPLETION_SENTENCES = {"is fully followed": "3", "is only partly followed": "2", "is not followed": "1"}
_SEAMS = {"hard, clearly visible seam": "hard", "noticeable seam": "noticeable", "faint seam": "faint"}


def _first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.IGNORECASE)
    return match.group(1).lower() if match else None


def _completion(text: str) -> str | None:
    word = _first(r"prompt completion is\s+(non-compliant|partly-compliant|fully compliant)", text)
    if word is not None:
        return _COMPLETION_WORDS[word]
    return next((v for k, v in _COMPLETION_SENTENCES.items() if k in text.lower()), None)


def _seam(text: str) -> str | None:
    lowered = text.lower()
    if "blends smoothly" in lowered:
        return "none"
    return next((v for k, v in _SEAMS.items() if k in lowered), None)


def _halo(text: str, seam: str | None) -> str | None:
    if seam in (None, "none"):
        return None  # the demo names a halo only beside a seam
    return "yes" if "outline runs along" in text.lower() else "no"


def _artefact(text: str) -> str | None:
    from epaiqa.data.demo.edits import ARTEFACT_PHRASES  # the demo generator (scipy): only when reading

    lowered = text.lower()
    if "content looks clean" in lowered:
        return "none"
    return next((kind for kind, phrase in ARTEFACT_PHRASES.items() if phrase in lowered), None)


def read_facets(text: str) -> dict[str, str | None]:
    """The facets an explanation states (``None``: not stated), read with the demo CoT's own words."""
    seam = _seam(text)
    artefact = _artefact(text)
    has_seam, has_artefact = seam not in (None, "none"), artefact not in (None, "none")
    return {
        "completion": _completion(text),
        "seam": seam,
        "brightness": _first(r"\b(brighter|darker) than its surroundings", text) if has_seam else None,
        "tint": _first(r"with an? (red|green|blue) cast", text) if has_seam else None,
        "halo": _halo(text, seam),
        "artefact": artefact,
        "artefact_degree": _first(r"there is (slight|moderate|strong) ", text) if has_artefact else None,
        "harmony_level": _first(r"harmony is " + _LEVEL, text),
        "naturalness_level": _first(r"local naturalness is " + _LEVEL, text),
        "overall_level": _first(r"overall editing quality level of the image is " + _LEVEL, text),
    }


#: the facets :func:`read_facets` reads, in its order
FACETS = (
    "completion",
    "seam",
    "brightness",
    "tint",
    "halo",
    "artefact",
    "artefact_degree",
    "harmony_level",
    "naturalness_level",
    "overall_level",
)


def _within_one(a: str, b: str) -> bool:
    return abs(LEVELS.index(a) - LEVELS.index(b)) <= 1


def _rate(pairs: list[tuple[str, str | None]], agree: Callable[[str, str], bool]) -> float:
    return sum(1 for ref, gen in pairs if gen is not None and agree(ref, gen)) / len(pairs)


def facet_scores(pairs: list[tuple[str, str | None]], level: bool) -> dict[str, Any]:
    """Agreement of (reference, generated) values of one facet, the majority rate, the unstated share."""
    counts = Counter(ref for ref, _ in pairs)
    majority, count = counts.most_common(1)[0]
    scores: dict[str, Any] = {
        "n": len(pairs),
        "agreement": _rate(pairs, str.__eq__),
        "majority_value": majority,
        "majority_rate": count / len(pairs),
        "unstated": sum(1 for _, gen in pairs if gen is None) / len(pairs),
    }
    if level:
        scores["within_one"] = _rate(pairs, _within_one)
        best = max(LEVELS, key=lambda word: sum(1 for ref, _ in pairs if _within_one(ref, word)))
        scores["majority_within_one"] = sum(1 for ref, _ in pairs if _within_one(ref, best)) / len(pairs)
    return scores


def is_demo_root(root: Path) -> bool:
    """Whether ``root`` is a synthetic demo set (its generator's parameters and its README's word for it)."""
    readme = root / "README.txt"
    return (root / "generation.jsonl").is_file() and readme.is_file() and "SYNTHETIC" in readme.read_text()


def judge_demo(run_dir: str | Path, out: str | Path | None = None, root: str | None = None) -> dict[str, Any]:
    """Judge a stage-3 run's explanations on the demo set; writes and returns ``judge.json``'s content."""
    run_dir = Path(run_dir)
    rows = read_explanations(run_dir)
    name, dataset = run_identity(run_dir, root)
    if not is_demo_root(dataset):
        raise DataError(
            f"{dataset}: not a demo root (no generation.jsonl / SYNTHETIC README.txt); the demo judge reads the facets "
            "the demo's generator wrote — judge real explanations with an LLM (--judge-model openai/o3-mini, …)"
        )
    read = [(read_facets(str(r["reference_answer"])), read_facets(str(r["explanation"]))) for r in rows]
    facets = {}
    for facet in FACETS:
        pairs = [(ref[facet], gen[facet]) for ref, gen in read if ref[facet] is not None]
        if pairs:
            facets[facet] = facet_scores(pairs, facet in LEVEL_FACETS)  # type: ignore[arg-type]
    unreadable = sum(1 for _, gen in read if all(v is None for v in gen.values()))
    summary = {
        "judge": DEMO_JUDGE,
        "kind": DEMO_KIND,
        "model": name,
        "root": str(dataset),
        "samples": len(rows),
        "unreadable_rate": unreadable / len(rows),
        "facets": facets,
        "note": "demo set only: facets read from the synthetic demo's explanations; not a judgement of real PAIs",
    }
    atomic_write_json(Path(out or run_dir) / JUDGE, summary)
    return summary
