"""A memo of images that passed the full decode check, so that the jobs of a sweep validate a root once.

Validating a root decodes every image (truncation shows only then): 2–3 s a job on the demo set's 4,000 images.
The memo keeps, per dataset root, each image that passed with its file size, modification time and displayed
size; an image whose size or time changed since is decoded again. It lives in the cache
(``$EPAIQA_CACHE`` or ``~/.cache/epaiqa``, ``validated/<hash of the root's path>.json``), never in the dataset
root; an unwritable cache only costs the decode next time. ``epaiqa validate`` always decodes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from epaiqa.io import atomic_write_text

Size = tuple[int, int]


def memo_path(root: Path) -> Path:
    """Where the memo of ``root`` is kept."""
    cache = Path(os.environ.get("EPAIQA_CACHE") or "~/.cache/epaiqa").expanduser()
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache / "validated" / f"{key}.json"


def file_stamp(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file, or None when it cannot be read: what tells a changed file apart."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class ValidatedImages:
    """The images of one root known to decode, by path relative to the root."""

    def __init__(self, root: Path) -> None:
        self.root, self.path = root, memo_path(root)
        self.known: dict[str, list[int]] = {}
        self.changed = False
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.known = {k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 4}
        except (OSError, ValueError):
            pass

    def size(self, rel: str, path: Path) -> Size | None:
        """The displayed size of an image that passed before and has not changed since (else None)."""
        entry, stamp = self.known.get(rel), file_stamp(path)
        if entry is None or stamp is None or tuple(entry[:2]) != stamp:
            return None
        return entry[2], entry[3]

    def passed(self, rel: str, path: Path, size: Size) -> None:
        """Remember that ``path`` decoded, with its displayed size."""
        stamp = file_stamp(path)
        if stamp is not None and self.known.get(rel) != [*stamp, *size]:
            self.known[rel] = [*stamp, *size]
            self.changed = True

    def save(self) -> None:
        """Write the memo when it changed (an unwritable cache is skipped)."""
        if not self.changed:
            return
        try:
            atomic_write_text(self.path, json.dumps(self.known, separators=(",", ":")))
            self.changed = False
        except OSError:
            pass
