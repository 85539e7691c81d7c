"""The PAI sample: what one line of ``manifest.jsonl`` holds (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The paper's four manipulation types, in its table order (Type-1..Type-4).
EDIT_TYPES: tuple[str, ...] = ("style_change", "object_enhancement", "object_operation", "semantic_change")
#: the edit type of a sample from a benchmark that does not say it (converted sets): a column of its own in tables
UNKNOWN_EDIT_TYPE = "unknown"
#: every edit type a manifest may name
MANIFEST_EDIT_TYPES: tuple[str, ...] = (*EDIT_TYPES, UNKNOWN_EDIT_TYPE)
#: where a sample's bbox came from: given by the dataset, the box of its edit mask, or of the source/edited difference
BBOX_SOURCES: tuple[str, ...] = ("given", "mask", "difference")

#: Rating dimensions and their scales (paper §3.1).
SCORE_RANGES: dict[str, tuple[int, int]] = {
    "overall": (1, 5),
    "harmony": (1, 5),
    "naturalness": (1, 5),
    "completion": (1, 3),
}
DIMENSIONS: tuple[str, ...] = tuple(SCORE_RANGES)

#: Scoring tasks that have a subset of their own (paper §3.2).
TASKS: tuple[str, ...] = ("naturalness", "harmony", "overall")

#: Sections of a chain-of-thought explanation (stage 3).
COT_FIELDS: tuple[str, ...] = ("completion", "harmony", "naturalness", "overall")

MANIFEST = "manifest.jsonl"
RATINGS = "ratings.csv"
SPLITS = "splits.json"
#: the preference groups of a converted preference benchmark (epaiqa/data/preferences.py), beside the manifest
PREFERENCES = "preferences.jsonl"
#: what a converter records about a root: its source format and version, and its dimensions' scales and meaning
DATASET_INFO = "dataset.json"


@dataclass(frozen=True)
class PAISample:
    """One partially AI-edited image with its prompt, edited region and ratings.

    ``bbox`` is the paper's ⟨x, y, z1, z2⟩: centre x, centre y, width, height as fractions of the
    image. ``source`` and ``edited`` are paths relative to the dataset root. ``bbox_source`` says where the box
    came from (:data:`BBOX_SOURCES`); ``other_mos`` holds ratings of a converted benchmark's dimensions that are not
    the paper's, under their own names (their scales are in ``dataset.json``).
    """

    id: str
    source: str
    edited: str
    prompt: str
    bbox: tuple[float, float, float, float]
    edit_type: str
    editor: str = "unknown"
    mos: dict[str, float | None] = field(default_factory=dict)
    cot: dict[str, str] | None = None
    bbox_source: str = "given"
    other_mos: dict[str, float | None] = field(default_factory=dict)

    def score(self, dimension: str) -> float | None:
        """The mean opinion score of one dimension, or None if it was filtered out."""
        return self.mos.get(dimension)

    def to_json(self) -> dict[str, Any]:
        """The manifest line for this sample."""
        line: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "edited": self.edited,
            "prompt": self.prompt,
            "bbox": [round(float(v), 6) for v in self.bbox],
            "edit_type": self.edit_type,
            "editor": self.editor,
            "mos": {d: self.mos.get(d) for d in DIMENSIONS},
        }
        if self.cot is not None:
            line["cot"] = dict(self.cot)
        if self.bbox_source != "given":
            line["bbox_source"] = self.bbox_source
        if self.other_mos:
            line["other_mos"] = dict(self.other_mos)
        return line


def has_cot(sample: PAISample, section: str) -> bool:
    """Whether the sample has a non-empty ``cot.<section>``."""
    return bool((sample.cot or {}).get(section, "").strip())


def has_explain_cot(sample: PAISample) -> bool:
    """Whether the sample has every CoT section its E.3 answer uses.

    Completion always; harmony and naturalness too when the prompt is followed.
    """
    sections = ("completion", "harmony", "naturalness") if sample.score("completion") == 3 else ("completion",)
    return all((sample.cot or {}).get(section, "").strip() for section in sections)
