"""The prompts of the explanation judge and the CoT data engine, kept as data files beside this module.

Texts use ``$name`` placeholders (:class:`string.Template`), so the JSON in them needs no escaping. The paper prints
the judge's rubric (appendix F) but not the prompts around it, nor the data engine's (§4.3); these are the
project's, and each file says where its wording comes from.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from string import Template


@cache
def prompt_text(name: str) -> str:
    """The text of ``epaiqa/prompts/<name>`` (comment lines starting with ``#`` removed, trailing space stripped)."""
    raw = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return "\n".join(line for line in raw.splitlines() if not line.startswith("#")).strip() + "\n"


def template(name: str) -> Template:
    """A prompt file as a :class:`string.Template`."""
    return Template(prompt_text(name))


def prompts_digest(*names: str) -> str:
    """12 hex digits naming the versions of the given prompt files (recorded beside what they produced)."""
    blob = "\0".join(f"{name}\0{prompt_text(name)}" for name in names)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
