"""Running the app: binding its socket first (a port in use is one clear line), then uvicorn on it.

:func:`bind` opens the listening socket before the model loads, so a busy port or a bad address fails at once;
:func:`run` serves in the foreground (``epaiqa serve``; Ctrl-C stops it); :class:`ServerThread` serves from a
thread of this process (tests and the load benchmark: a real loopback server on a free port).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from typing import Any

import uvicorn

from epaiqa.errors import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); :class:`ConfigError` in one line otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot bind {host}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use (pick another with --port)") from None
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def config(app: Any, log_level: str = "warning") -> uvicorn.Config:
    """Uvicorn's settings for the app: no access log (one line per request costs time at load), keep-alive 5 s."""
    return uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_keep_alive=5)


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: Any, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on ``sock`` until stopped (SIGINT/SIGTERM); Ctrl-C is a normal end, not a traceback."""
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down, then raises the SIGINT it caught again
        uvicorn.Server(config(app, log_level)).run(sockets=[sock])


class ServerThread:
    """The app served from a daemon thread on a loopback socket; a context manager giving its base URL."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(config(app))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
