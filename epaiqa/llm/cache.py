"""A resumable on-disk cache of replies, keyed by (client, prompt hash, sample id, repetition).

One JSON line per reply, appended and flushed to disk as soon as the reply arrives, so a killed job loses at most
the requests in flight; a rerun reads the file and asks only what is missing. A line cut short by the kill is
skipped (and the file is mended with a newline before anything is appended). Lines hold the reply and its token
counts, never a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from epaiqa.llm.base import Reply


def cache_key(client: str, prompt_hash: str, sample_id: str, repetition: int) -> str:
    """The cache key of one request (a SHA-256 of its four parts)."""
    blob = json.dumps([client, prompt_hash, str(sample_id), int(repetition)])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ReplyCache:
    """Replies of earlier runs, by key; :meth:`put` appends one durably (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self.skipped = 0
        if self.path.is_file():
            raw = self.path.read_bytes()
            for line in raw.decode("utf-8", "replace").splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[entry["key"]] = entry
                except (ValueError, KeyError, TypeError):
                    self.skipped += int(bool(line.strip()))
            if raw and not raw.endswith(b"\n"):  # a line cut by a kill: end it before appending
                with self.path.open("ab") as fh:
                    fh.write(b"\n")

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Reply | None:
        """The cached reply of a key, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        return Reply(entry["text"], entry.get("prompt_tokens"), entry.get("completion_tokens"), 0, cached=True)

    def put(self, key: str, reply: Reply, **about: Any) -> None:
        """Append a reply (with what identifies its request: client, sample id, repetition, prompt hash)."""
        entry = {
            "key": key,
            **about,
            "text": reply.text,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "attempts": reply.attempts,
            "time": round(time.time(), 3),
        }
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._entries[key] = entry
