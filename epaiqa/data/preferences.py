"""Preference groups of a converted benchmark: ``preferences.jsonl`` beside the manifest.

Preference benchmarks (EditReward-Bench, GenAI-Bench, EditScore's set) rate edits of one source and prompt against
each other rather than on a scale. Each line of ``preferences.jsonl`` is one group of 2 to :data:`MAX_CANDIDATES`
candidates (manifest sample ids) and the human ranking of one dimension::

    {"id": "g17", "dimension": "overall", "candidates": ["g17_A", "g17_B", "g17_C"],
     "tiers": [["g17_C"], ["g17_A", "g17_B"]], "label": "C>A=B", "split": "test"}

``tiers`` lists the candidates best first; candidates in one tier are tied (GenAI-Bench's "tie" and "both bad",
EditReward-Bench's ``A=B``). ``label`` keeps the benchmark's own vote as it was written; ``split`` (optional) says
which part of the benchmark the group belongs to. Problems are reported as ``preferences.jsonl:LINE: field: message``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epaiqa.data.schema import PREFERENCES
from epaiqa.io import atomic_write_text

#: the largest group a line may hold (the field's sets have 2 to 4 candidates)
MAX_CANDIDATES = 64
MAX_LINE_CHARS = 64_000
_RANKING = re.compile(r"^[A-Z](\s*[>=<]\s*[A-Z])*$")


@dataclass(frozen=True)
class PreferenceGroup:
    """One group of candidates for one source and prompt, ranked by humans on one dimension."""

    id: str
    dimension: str
    candidates: tuple[str, ...]
    tiers: tuple[tuple[str, ...], ...]
    label: str = ""
    split: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def rank(self, candidate: str) -> int:
        """The candidate's tier, 0 for the best."""
        return next(i for i, tier in enumerate(self.tiers) if candidate in tier)

    def human_order(self, a: str, b: str) -> int:
        """1 if humans prefer ``a`` over ``b``, -1 if ``b`` over ``a``, 0 for a tie."""
        ra, rb = self.rank(a), self.rank(b)
        return (ra < rb) - (ra > rb)

    def to_json(self) -> dict[str, Any]:
        """The line of ``preferences.jsonl`` for this group."""
        line: dict[str, Any] = {
            "id": self.id,
            "dimension": self.dimension,
            "candidates": list(self.candidates),
            "tiers": [list(t) for t in self.tiers],
        }
        if self.label:
            line["label"] = self.label
        if self.split:
            line["split"] = self.split
        return line | self.extra


def tiers_from_ranking(ranking: str, candidates: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Tiers from a ranking written with letters for the candidates in order: ``"C>A>B"``, ``"A=B"``, ``"B<A"``.

    ``A`` is ``candidates[0]``, ``B`` the second and so on; ``>`` ranks the left one higher, ``<`` the right one,
    ``=`` ties them. Every candidate must appear exactly once. ValueError names what is wrong.
    """
    text = ranking.strip().upper()
    if not _RANKING.match(text):
        raise ValueError(f"ranking {ranking!r} is not letters joined by '>', '<' or '='")
    letters = re.findall(r"[A-Z]", text)
    wanted = [chr(ord("A") + i) for i in range(len(candidates))]
    if sorted(letters) != wanted:
        raise ValueError(f"ranking {ranking!r} must name each of {', '.join(wanted)} exactly once")
    if "<" in text and ">" in text:
        raise ValueError(f"ranking {ranking!r} mixes '>' and '<'")
    if "<" in text:  # "B<A" is "A>B"
        text = "".join(reversed(re.split(r"([<=])", text))).replace("<", ">")
    tiers = [[candidates[ord(c) - ord("A")] for c in part.split("=")] for part in text.replace(" ", "").split(">")]
    return tuple(tuple(t) for t in tiers)


def _problems(data: Any, known: set[str] | None) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        return [("json", "each line must be a JSON object")]
    out = [(k, "missing") for k in ("id", "dimension", "candidates", "tiers") if k not in data]
    if out:
        return out
    if not isinstance(data["id"], str) or not data["id"]:
        out.append(("id", f"must be a non-empty string, got {data['id']!r}"))
    if not isinstance(data["dimension"], str) or not data["dimension"]:
        out.append(("dimension", f"must be a dimension name, got {data['dimension']!r}"))
    cands = data["candidates"]
    if not isinstance(cands, list) or not all(isinstance(c, str) for c in cands):
        return [*out, ("candidates", "must be a list of sample ids")]
    if not 2 <= len(cands) <= MAX_CANDIDATES:
        out.append(("candidates", f"a group has 2 to {MAX_CANDIDATES} candidates, got {len(cands)}"))
    if len(set(cands)) != len(cands):
        out.append(("candidates", "names a sample twice"))
    if known is not None and (missing := [c for c in cands if c not in known]):
        out.append(("candidates", f"not in the manifest: {', '.join(map(repr, missing[:5]))}"))
    tiers = data["tiers"]
    if not isinstance(tiers, list) or not all(isinstance(t, list) and t for t in tiers):
        return [*out, ("tiers", "must be a list of non-empty lists of candidate ids, best first")]
    flat = [c for t in tiers for c in t]
    if sorted(map(str, flat)) != sorted(cands):
        out.append(("tiers", "must name every candidate exactly once"))
    for key in ("label", "split"):
        if key in data and not isinstance(data[key], str):
            out.append((key, f"must be text, got {data[key]!r}"))
    return out


def check_preferences(
    lines: Iterable[str], known: set[str] | None = None
) -> tuple[list[PreferenceGroup], list[tuple[int, str, str]]]:
    """The valid groups of ``preferences.jsonl`` lines and every ``(line, field, message)`` problem."""
    groups: list[PreferenceGroup] = []
    problems: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_CHARS:
            problems.append((lineno, "json", f"the line is {len(raw):,} characters long; at most {MAX_LINE_CHARS:,}"))
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append((lineno, "json", f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        found = _problems(data, known)
        if not found and data["id"] in seen:
            found = [("id", f"{data['id']!r} already used on line {seen[data['id']]}")]
        if found:
            problems.extend((lineno, f, m) for f, m in found)
            continue
        seen[data["id"]] = lineno
        extra = {k: v for k, v in data.items() if k not in ("id", "dimension", "candidates", "tiers", "label", "split")}
        groups.append(
            PreferenceGroup(
                data["id"],
                data["dimension"],
                tuple(data["candidates"]),
                tuple(tuple(t) for t in data["tiers"]),
                data.get("label", ""),
                data.get("split", ""),
                extra,
            )
        )
    return groups, problems


def read_preferences(root: str | Path, known: set[str] | None = None) -> list[PreferenceGroup]:
    """The groups of ``ROOT/preferences.jsonl`` (empty when the root has none), or DataError naming every problem."""
    from epaiqa.errors import DataError

    path = Path(root) / PREFERENCES
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    groups, problems = check_preferences(lines, known)
    if problems:
        raise DataError(
            f"{path} is invalid ({len(problems)} problems):", [f"{PREFERENCES}:{n}: {f}: {m}" for n, f, m in problems]
        )
    return groups


def write_preferences(root: str | Path, groups: Iterable[PreferenceGroup]) -> Path:
    """Write ``ROOT/preferences.jsonl`` atomically."""
    text = "".join(json.dumps(g.to_json(), ensure_ascii=False) + "\n" for g in groups)
    return atomic_write_text(Path(root) / PREFERENCES, text)
