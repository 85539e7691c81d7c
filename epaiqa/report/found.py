"""The JSON summaries of one name under run folders (``judge.json``, ``preferences.json``), read for the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def find_summaries(
    dirs: list[str | Path], name: str, accept: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every ``name`` file under ``dirs`` that ``accept`` takes (each with its ``path``), and the unreadable ones."""
    found, unreadable = [], []
    for d in map(Path, dirs):
        paths = sorted(d.rglob(name)) if d.is_dir() else [d] if d.name == name else []
        for path in paths:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or not accept(data):
                    raise ValueError(f"not a {name} of this project")
            except (OSError, ValueError):
                unreadable.append(str(path))
                continue
            found.append({**data, "path": str(path)})
    return found, unreadable
