"""Pacing requests: at most ``requests_per_minute`` starts and ``tokens_per_minute`` tokens in any minute."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class Pacer:
    """Blocks :meth:`wait` until a request may start; :meth:`spent` records the tokens a reply took.

    Request starts are spaced ``60 / requests_per_minute`` seconds apart. Tokens are counted over a sliding
    minute: while the replies of the last minute took ``tokens_per_minute`` or more, no request starts.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = WINDOW_S / requests_per_minute if requests_per_minute else 0.0
        self.tokens_per_minute = tokens_per_minute
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next_start = -float("inf")
        self._tokens: deque[tuple[float, int]] = deque()

    def _token_wait(self, now: float) -> float:
        while self._tokens and self._tokens[0][0] <= now - WINDOW_S:
            self._tokens.popleft()
        if not self.tokens_per_minute or sum(n for _, n in self._tokens) < self.tokens_per_minute:
            return 0.0
        return self._tokens[0][0] + WINDOW_S - now

    def wait(self) -> None:
        """Sleep until the next request may start (and reserve its start)."""
        while True:
            with self._lock:
                now = self._clock()
                delay = self._token_wait(now)
                if delay <= 0:
                    start = max(now, self._next_start + self.interval)
                    self._next_start = start
                    delay = start - now
                    reserved = True
                else:
                    reserved = False
            if delay > 0:
                self._sleep(delay)
            if reserved:
                return

    def spent(self, tokens: int | None) -> None:
        """Count a reply's tokens (prompt + completion) against the minute's budget."""
        if tokens:
            with self._lock:
                self._tokens.append((self._clock(), int(tokens)))
