"""The one error shape of the server: a status and ``{"error": "...", "field": "..."}`` naming what was wrong.

``field`` names the request field at fault (``source``, ``items[2].bbox``, ``candidates[3]``, ``prompt``), or
what else was: ``body`` (unreadable or too large), ``authorization``, ``queue``, ``request`` (time, load),
``path`` (an unknown route); it is null only for a fault of the server itself.
"""

from __future__ import annotations

import json
from typing import Any


class RequestError(Exception):
    """A request the server refuses: the HTTP status, a one-line message and the field at fault."""

    def __init__(self, status: int, error: str, field: str | None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field

    def body(self) -> dict[str, Any]:
        """The JSON object answered."""
        return {"error": self.error, "field": self.field}


def bad(field: str, error: str, status: int = 400) -> RequestError:
    """A :class:`RequestError` of ``field`` (400 unless told)."""
    return RequestError(status, error, field)


async def send_error(send: Any, error: RequestError, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer ``error`` on a raw ASGI ``send`` (for the layer outside FastAPI)."""
    payload = json.dumps(error.body()).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": payload})
