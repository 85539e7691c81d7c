"""The ASGI layer around the routes: the API key, the body size, the request time and the requests in flight.

It sees every request before FastAPI does and answers refusals itself, in the server's one error shape:

- 401 ``authorization``: a key is set (``EPAIQA_API_KEY``) and the request carries neither
  ``Authorization: Bearer KEY`` nor ``X-API-Key: KEY`` (the page, its script and ``/health`` are open);
- 413 ``body``: the body is over ``max_upload_bytes`` — refused from ``Content-Length`` when it says so, else
  when the streamed bytes pass the limit. Bytes over the limit are read and dropped up to as many again, so that a
  client still uploading reads the answer instead of a reset connection; nothing over the limit is kept;
- 503 ``request``: ``max_requests`` requests are being handled already;
- 504 ``request``: the request took longer than ``timeout_s`` (reading its body included: a slow upload is cut).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from epaiqa.serve.errors import RequestError, send_error
from epaiqa.serve.settings import API_KEY_ENV, Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: paths answered without the API key: the page and its files (they hold no data), the liveness probe
OPEN_PATHS = frozenset({"/", "/app.js", "/app.css", "/health"})


def too_large(limit: int) -> RequestError:
    """The 413 of a body over ``limit`` bytes."""
    return RequestError(413, f"the request body is over the limit of {limit:,} bytes (max_upload_bytes)", "body")


def authorized(headers: dict[str, str], key: str) -> bool:
    """Whether the headers carry ``key`` (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``), in constant time."""
    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


class LimitedBody:
    """An ASGI ``receive`` that raises the 413 once more than ``limit`` body bytes have come.

    Up to ``limit`` more bytes are read and dropped first, so that a client still uploading reads the answer.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.seen = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        self.seen += len(message.get("body", b""))
        if self.seen <= self.limit:
            return message
        more = message.get("more_body", False)
        while more and self.seen <= 2 * self.limit:
            message = await self.receive()
            if message["type"] != "http.request":
                break
            self.seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        raise too_large(self.limit)


class Guard:
    """Wraps the routes' ASGI app with the checks of the module doc."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the batcher's start and stop
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            extra = [(b"www-authenticate", b"Bearer")] if refusal.status == 401 else None
            await send_error(send, refusal, extra)
            return
        self.active += 1
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            limited = LimitedBody(receive, self.settings.max_upload_bytes)
            await asyncio.wait_for(self.app(scope, limited, tracked), self.settings.timeout_s)
        except asyncio.TimeoutError:
            if not started:
                late = f"the request took longer than the limit of {self.settings.timeout_s:g} s (timeout_s)"
                await send_error(send, RequestError(504, late, "request"))
        finally:
            self.active -= 1

    def refusal(self, scope: Scope) -> RequestError | None:
        """Why the request is refused before it is read (None if it is not)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        key = self.settings.api_key
        if key and scope.get("path") not in OPEN_PATHS and not authorized(headers, key):
            return RequestError(
                401,
                f"this server asks for its API key ({API_KEY_ENV}): "
                "send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                "authorization",
            )
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return RequestError(400, f"Content-Length must be a whole number of bytes, got {length!r}", "body")
            if int(length) > 2 * self.settings.max_upload_bytes:  # too far over to read and drop: refuse at once
                return too_large(self.settings.max_upload_bytes)
        if self.active >= self.settings.max_requests:
            return RequestError(
                503, f"the server is handling {self.active} requests already (max_requests); retry later", "request"
            )
        return None
