"""The converter registry: benchmark format name → :class:`~epaiqa.converters.base.Converter`.

:data:`FORMATS` names each format's module and describes it without importing anything (the CLI builds its parser
from it); a format's module, and with it the image stack, is imported when the format is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from epaiqa.errors import ConfigError

if TYPE_CHECKING:
    from epaiqa.converters.base import Converter

#: format name → (its module, one line about it)
FORMATS: dict[str, tuple[str, str]] = {
    "ie-bench": ("epaiqa.converters.ie_bench", "IE-Bench: source/edited pairs with an overall MOS on 1–5"),
    "editreward-bench": (
        "epaiqa.converters.editreward_bench",
        "EditReward-Bench: 2–4 edits ranked by overall human preference",
    ),
    "editscore": ("epaiqa.converters.editscore", "EditScore's EditReward-Bench: pairs, first preferred, per dimension"),
    "genai-bench": ("epaiqa.converters.genai_bench", "GenAI-Bench image editing: left/right/tie/both-bad votes"),
    "imagenhub": ("epaiqa.converters.imagenhub", "ImagenHub human evaluation: per-rater [SC, PQ] TSVs (0, 0.5, 1)"),
    "aurora": ("epaiqa.converters.aurora", "AURORA-Bench pointwise human ratings (prompt, input, gen, score, model)"),
}


def list_converters() -> list[str]:
    """The format names, sorted."""
    return sorted(FORMATS)


def get_converter(name: str) -> Converter:
    """One format's converter, or ConfigError naming the known ones."""
    if name not in FORMATS:
        raise ConfigError(f"unknown format {name!r} (known: {', '.join(list_converters())})")
    converter = importlib.import_module(FORMATS[name][0]).CONVERTER
    assert converter.name == name, f"{FORMATS[name][0]} registers {converter.name!r}, not {name!r}"
    return converter


def converters() -> dict[str, Converter]:
    """Every converter by format name (imports every format module)."""
    return {name: get_converter(name) for name in FORMATS}
