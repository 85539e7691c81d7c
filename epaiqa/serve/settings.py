"""The server's settings and limits, each with a default, and who may bind where.

Every limit is a setting (a command-line flag of ``epaiqa serve``); :meth:`Settings.public` is what ``GET /info``
shows. The defaults bound what one request may cost:

- ``max_upload_bytes`` (16 MiB): a request body, all images together (multipart or JSON with base64);
- ``max_pixels`` (16,777,216 = 4096²): one image, width × height, read from its header before any pixel is
  decoded (the project-wide ``EPAIQA_MAX_PIXELS`` still applies on top: the stricter wins);
- ``max_prompt_chars`` (1,000, the manifest's limit): one editing prompt;
- ``max_candidates`` (16): the candidates of one ``/rank`` request and the items of one ``/score`` request;
- ``timeout_s`` (60): one request, from its first byte read to its answer (504 past it);
- ``max_queue`` (256): items waiting to be scored, over all clients (503 past it);
- ``max_requests`` (64): requests being handled at once (503 past it);
- ``parse_slots`` (4): requests whose bodies are read, decoded and checked at once (the rest wait their turn,
  within their time limit) — with ``max_upload_bytes`` this bounds the memory that uploads take.

Binding to any address but loopback needs an API key in ``EPAIQA_API_KEY``; when the variable is set, every
endpoint but ``/``, its script and ``/health`` asks for it (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: the environment variable holding the API key
API_KEY_ENV = "EPAIQA_API_KEY"
MIB = 1024 * 1024


def manifest_prompt_limit() -> int:
    """The manifest's longest editing prompt (imported on use: the CLI's parser stays light)."""
    from epaiqa.data.manifest import MAX_PROMPT_CHARS

    return MAX_PROMPT_CHARS


@dataclass(frozen=True)
class Settings:
    """What one server does and allows; see the module doc for each limit."""

    host: str = "127.0.0.1"
    port: int = 8000
    root: Path | None = None
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_upload_bytes: int = 16 * MIB
    max_pixels: int = 4096 * 4096
    max_prompt_chars: int = field(default_factory=manifest_prompt_limit)
    max_candidates: int = 16
    timeout_s: float = 60.0
    max_queue: int = 256
    max_requests: int = 64
    parse_slots: int = 4
    api_key: str | None = None

    def public(self) -> dict[str, Any]:
        """The settings as ``GET /info`` shows them (the key only as whether one is required)."""
        shown = asdict(self)
        shown.pop("api_key")
        shown["root"] = None if self.root is None else str(self.root)
        shown["api_key_required"] = self.api_key is not None
        return shown


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key_from_env() -> str | None:
    """The API key of ``EPAIQA_API_KEY`` (None when unset or blank)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


def bind_problem(host: str, key: str | None) -> str | None:
    """Why the server may not bind ``host`` (None if it may): any address but loopback needs an API key."""
    if is_loopback(host) or key:
        return None
    return (
        f"binding to {host} (not a loopback address) exposes the model to the network: set an API key in "
        f"{API_KEY_ENV} first (clients then send 'Authorization: Bearer KEY' or 'X-API-Key: KEY')"
    )
