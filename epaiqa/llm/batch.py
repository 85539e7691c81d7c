"""Asking a client many prompts: the cache first, then ``concurrency`` requests at a time, paced, with progress.

:func:`ask_all` returns the replies in job order. Each new reply is appended to the cache the moment it arrives,
so a killed job rerun asks only what it had not been answered. A request that fails for good (see
:mod:`epaiqa.llm.api`) stops the batch: the requests not yet started are dropped, the error is raised, and the
replies cached so far stay for the rerun.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from epaiqa.llm.base import Client, Reply
from epaiqa.llm.cache import ReplyCache, cache_key
from epaiqa.llm.limits import Pacer
from epaiqa.llm.prompt import Prompt


@dataclass(frozen=True)
class Job:
    """One request of a batch: the prompt, the sample it is about and which repetition it is."""

    sample_id: str
    repetition: int
    prompt: Prompt


@dataclass
class Usage:
    """What a batch cost: requests sent, replies taken from the cache, tokens (where reported), USD (if priced)."""

    client: str
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreported: int = 0
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, reply: Reply) -> None:
        """Count one reply (cached replies count as cached, not as requests)."""
        with self._lock:
            if reply.cached:
                self.cached += 1
                return
            self.requests += 1
            if reply.prompt_tokens is None and reply.completion_tokens is None:
                self.unreported += 1
            self.prompt_tokens += reply.prompt_tokens or 0
            self.completion_tokens += reply.completion_tokens or 0

    @property
    def cost(self) -> float | None:
        """USD of the tokens sent in this run, when the client's prices are set."""
        if self.price_input_per_mtok is None or self.price_output_per_mtok is None:
            return None
        spent = self.prompt_tokens * self.price_input_per_mtok + self.completion_tokens * self.price_output_per_mtok
        return spent / 1e6

    def summary(self) -> str:
        """One line: requests, cached replies, tokens in/out, cost."""
        text = (
            f"{self.client}: {self.requests} requests, {self.cached} replies from the cache, "
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens"
        )
        if self.unreported:
            text += f" ({self.unreported} replies without token counts)"
        if self.cost is not None:
            text += f", ${self.cost:.4f}"
        return text

    def to_json(self) -> dict[str, object]:
        """The counts as plain data."""
        return {
            "client": self.client,
            "requests": self.requests,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost,
        }


def _seed(key: str) -> int:
    return int(key[:8], 16)


def ask_all(
    client: Client,
    jobs: Sequence[Job],
    cache: ReplyCache,
    label: str = "requests",
    pacer: Pacer | None = None,
    progress: bool | None = None,
    usage: Usage | None = None,
) -> list[Reply]:
    """Every job's reply, in order: cached ones from ``cache``, the others asked and cached as they arrive.

    ``progress`` shows a progress bar with token counts on stderr (default: when stderr is a terminal). A local
    model samples with a seed derived from the cache key, so a rerun of a missing request gives the same reply.
    """
    s = client.settings
    usage = usage if usage is not None else Usage(s.client, price_input_per_mtok=s.price_input_per_mtok,
                                                  price_output_per_mtok=s.price_output_per_mtok)  # fmt: skip
    pacer = pacer or Pacer(s.requests_per_minute, s.tokens_per_minute)
    params = {"temperature": s.temperature, "max_tokens": s.max_tokens}
    keys = [cache_key(s.client, j.prompt.digest(**params), j.sample_id, j.repetition) for j in jobs]
    replies: list[Reply | None] = [cache.get(k) for k in keys]
    for reply in replies:
        if reply is not None:
            usage.add(reply)
    todo = [i for i, r in enumerate(replies) if r is None]
    show = sys.stderr.isatty() if progress is None else progress

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[tokens]}"),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    )

    def one(i: int) -> None:
        job = jobs[i]
        pacer.wait()
        reply = client.ask(job.prompt, seed=_seed(keys[i]))
        pacer.spent((reply.prompt_tokens or 0) + (reply.completion_tokens or 0))
        cache.put(keys[i], reply, client=s.client, sample_id=job.sample_id, repetition=job.repetition,
                  prompt_hash=job.prompt.digest(**params))  # fmt: skip
        replies[i] = reply
        usage.add(reply)
        tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tok" + (
            f" ${usage.cost:.3f}" if usage.cost is not None else ""
        )
        bar.update(task, advance=1, tokens=tokens)

    with bar:
        task = bar.add_task(f"{label} · {s.client}", total=len(jobs), completed=len(jobs) - len(todo), tokens="")
        workers = 1 if s.provider == "local" else s.concurrency
        if workers == 1:
            for i in todo:
                one(i)
        elif todo:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm")
            futures: list[Future[None]] = [pool.submit(one, i) for i in todo]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            pool.shutdown(wait=failed is None, cancel_futures=True)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
    return [r for r in replies if r is not None]
