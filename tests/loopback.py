"""A real HTTP server on 127.0.0.1 speaking OpenAI's chat-completions protocol, with scripted replies.

``script`` is called with the request's JSON body and the request number (from 1) and returns an action:

- ``("ok", content)`` or ``("ok", content, usage_dict)``: a chat completion;
- ``("status", code, headers, message)``: an error status with an OpenAI-style error body;
- ``("slow", seconds, content)``: a chat completion after a delay;
- ``("drop",)``: the connection closed without a reply;
- ``("raw", text)``: a 200 whose body is ``text`` as it is;
- ``("hang",)``: no reply until the server stops.

Every request is recorded (path, headers, body); ``answered`` counts the completions sent in full.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = tuple[Any, ...]
Script = Callable[[dict[str, Any], int], Action]


def completion(content: str, usage: dict[str, int] | None = None, model: str = "scripted") -> dict[str, Any]:
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def user_text(body: dict[str, Any]) -> str:
    """The user turn's text of a request body."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


class Loopback:
    """The server and what it saw; use as a context manager."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.answered = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "time": time.monotonic(),
                        }
                    )
                    number = len(server.requests)
                action = server.script(body, number)
                kind = action[0]
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if kind == "hang":
                    server.stopping.wait(60)
                    self.close_connection = True
                    return
                if kind == "slow":
                    time.sleep(action[1])
                    action = ("ok", action[2])
                if kind == "raw":
                    self._send(200, action[1].encode(), {"Content-Type": "application/json"})
                elif kind == "status":
                    _, code, headers, message = action
                    error = {"error": {"message": message, "type": "scripted", "code": code}}
                    self._send(code, json.dumps(error).encode(), {"Content-Type": "application/json", **headers})
                else:
                    usage = action[2] if len(action) > 2 else None
                    payload = json.dumps(completion(action[1], usage, body.get("model", "scripted"))).encode()
                    self._send(200, payload, {"Content-Type": "application/json"})
                    with server.lock:
                        server.answered += 1

            def _send(self, code: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def times(self) -> list[float]:
        return [r["time"] for r in self.requests]


def free_url() -> str:
    """A loopback URL where nothing listens (a port just freed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
