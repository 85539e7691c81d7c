"""Requests of all clients scored together: one bounded queue and one worker around ``scorer.score_pairs``.

Each item of a request is a job (a pair and the future its request awaits). The worker takes the first waiting job,
then collects more until it holds ``max_batch`` or ``max_wait_ms`` has passed since the first — waiting only while
other requests are still being read (:meth:`Batcher.arriving`): a lone request is scored at once, and under load the
batch fills — and scores them with one ``score_pairs`` call in its own thread — so there is one model and one batch
on it at a time, and the event loop keeps reading requests meanwhile. Answers go back to each job's future, in
order; a request whose client gave up (its time limit) has its jobs dropped before they are scored.

The queue is bounded: a request whose items do not all fit is refused whole (503, ``queue``), never half queued.
When a batch fails, its pairs are scored one by one so that only the pair at fault gets the error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from epaiqa.serve.errors import RequestError

ScorePairs = Callable[[Sequence[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class Job:
    """One pair to score, the future its request awaits, and what to call when it is done (used or dropped)."""

    pair: dict[str, Any]
    future: asyncio.Future
    done: Callable[[], None] | None = None


@dataclass
class Counts:
    """What the worker has done: batches, pairs scored, pairs dropped (their request gave up), largest batch."""

    batches: int = 0
    scored: int = 0
    dropped: int = 0
    largest: int = 0
    busy_s: float = 0.0
    sizes: collections.Counter = field(default_factory=collections.Counter)

    def public(self) -> dict[str, Any]:
        """The counts as ``/health`` shows them."""
        mean = self.scored / self.batches if self.batches else None
        return {
            "batches": self.batches,
            "scored": self.scored,
            "dropped": self.dropped,
            "largest_batch": self.largest,
            "mean_batch": mean,
            "busy_s": round(self.busy_s, 3),
        }


class Batcher:
    """The queue and its worker; :meth:`start` inside the server's event loop, :meth:`stop` at its end."""

    def __init__(self, score_pairs: ScorePairs, max_batch: int, max_wait_s: float, max_queue: int) -> None:
        self.score_pairs = score_pairs
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.pending: collections.deque[Job] = collections.deque()
        self.incoming = 0
        self.counts = Counts()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epaiqa-scorer")
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker in the running event loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._work(), name="epaiqa-batcher")

    async def stop(self) -> None:
        """Stop the worker; jobs still waiting fail with 503."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self.pending:
            job = self.pending.popleft()
            self._finish(job, error=RequestError(503, "the server is shutting down", "request"))
        self.executor.shutdown(wait=True)

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """A request is being read and checked: its pairs may join the batch being collected."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1
            if self._arrived is not None:
                self._arrived.set()  # the collector looks again: more pairs, or none coming

    @property
    def queued(self) -> int:
        """Jobs waiting to be scored."""
        return len(self.pending)

    async def score(self, pairs: list[dict[str, Any]], done: Callable[[], None] | None = None) -> list[Any]:
        """Queue ``pairs`` and wait for their answers (each an answer dict or the exception of that pair).

        ``done`` is called once per pair when the worker is finished with it (scored or dropped; at once when the
        queue refuses them): the request's image files must live until then, even when the request gave up.
        """
        refusal = None
        if self._arrived is None:
            refusal = RequestError(503, "the scorer is not running", "request")
        elif len(self.pending) + len(pairs) > self.max_queue:
            refusal = RequestError(
                503,
                f"the queue is full ({len(self.pending)} items waiting, max_queue {self.max_queue}); retry later",
                "queue",
            )
        if refusal is not None:
            for _ in pairs if done is not None else ():
                done()
            raise refusal
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        jobs = [Job(pair, loop.create_future(), done) for pair in pairs]
        self.pending.extend(jobs)
        self._arrived.set()
        return list(await asyncio.gather(*(job.future for job in jobs)))

    async def _collect(self) -> list[Job]:
        assert self._arrived is not None
        while not self.pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(self.pending) < self.max_batch and self.incoming > 0:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = []
            for job in batch:
                if job.future.done():  # its request gave up: not scored
                    self.counts.dropped += 1
                    self._finish(job)
                else:
                    live.append(job)
            if not live:
                continue
            start = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self.executor, self._score, [job.pair for job in live])
            except asyncio.CancelledError:
                for job in live:
                    self._finish(job, error=RequestError(503, "the server is shutting down", "request"))
                raise
            self.counts.busy_s += time.perf_counter() - start
            self.counts.batches += 1
            self.counts.scored += len(live)
            self.counts.largest = max(self.counts.largest, len(live))
            self.counts.sizes[len(live)] += 1
            for job, outcome in zip(live, outcomes, strict=True):
                self._finish(job, outcome)

    def _score(self, pairs: list[dict[str, Any]]) -> list[Any]:
        """Answers of a batch, in order (in the worker's thread); a failed batch is scored pair by pair."""
        try:
            answers = self.score_pairs(pairs)
            if len(answers) != len(pairs):
                raise RuntimeError(f"score_pairs answered {len(answers)} pairs for {len(pairs)}")
            return list(answers)
        except Exception as exc:
            if len(pairs) == 1:
                return [exc]
        outcomes: list[Any] = []
        for pair in pairs:
            try:
                outcomes.append(self.score_pairs([pair])[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _finish(job: Job, outcome: Any = None, error: BaseException | None = None) -> None:
        if not job.future.done():
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(outcome)
        if job.done is not None:
            job.done()
