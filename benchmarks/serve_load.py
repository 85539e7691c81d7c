"""Load on ``epaiqa serve``: throughput and latency at 1, 8 and 32 concurrent clients, against a one-at-a-time loop.

    python -m benchmarks.serve_load RUN [--root ROOT] [--clients 1,8,32] [--requests 160] [--abuse 30] [--out FILE]

RUN is a trained baseline run folder (``make demo`` trains one; any run ``epaiqa score`` takes works). The server
is started as its own process (``python -m epaiqa.serve serve RUN --port 0 --root ROOT``, default settings unless
told) so that its memory is its own and the clients (threads of this process, one ``httpx`` client each) do not
share its interpreter. Each request scores one demo sample, its two images uploaded as multipart files
(``--inputs path``: named by path under the root instead); every answer is checked against the scorer's own answer
for that sample, computed in this process first (within 1e-4, bbox and level equal), so a result given to the
wrong client is caught. Per concurrency level: requests answered, wrong or failed answers, throughput
(requests/s), p50 and p99 latency, the server's mean batch and the share of the wall time its worker spent
inside ``score_pairs`` (both from ``/health``).

The loop side is ``scorer(source, edited, prompt)`` over the same samples, one at a time in this process — what a
user without the server would run; it is timed before and after the server's levels (the median of the two is the
denominator). The ratio is the server's pairs/s over the loop's: it includes HTTP, the upload, the image checks
and the batching wait, and it gains only as far as the scorer's ``score_pairs`` runs a batch faster than its
pairs one by one.

``--abuse SECONDS`` (default 30; 0 skips it) then starts a fresh server with the default limits and runs an
abusive client loop against it — bodies far over the upload limit, streamed bodies without a length, uploads that
are no image, a pixel-bomb PNG header, ``/rank`` with 16 candidates of 4096×4096 images (the largest the
default ``max_pixels`` takes), base64 garbage — with a well-formed request among them; it reports the server's
peak resident memory (sampled every 50 ms), its memory at rest before, the statuses seen, and whether a good
request is still answered correctly afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ("score", "score_raw", "score_1_5", "reward")
JSON = {"content-type": "application/json"}


# --- the server process ---------------------------------------------------------------------------------------------


class ServerProcess:
    """``python -m epaiqa.serve serve RUN --port 0 ...`` as a child process; its URL and pid."""

    def __init__(self, run: Path, root: Path, extra: list[str], threads: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        env.pop("EPAIQA_API_KEY", None)
        command = [sys.executable, "-m", "epaiqa.serve", "serve", str(run), "--port", "0", "--root", str(root)]
        self.process = subprocess.Popen([*command, *extra], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = ""
        deadline = time.monotonic() + 180
        while not self.url:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("the server did not start within 180 s") from None
            if found := re.search(r"serving on (http://\S+)", line):
                self.url = found.group(1)
            elif line.startswith("error:"):
                raise RuntimeError(line.strip())

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class PeakRSS:
    """The largest resident set of a process, sampled every ``every`` seconds in a thread."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> int:
        return self.process.memory_info().rss

    def _sample(self) -> None:
        while not self.stopping.is_set():
            try:
                self.peak = max(self.peak, self.now())
            except Exception:  # the process ended
                return
            time.sleep(self.every)

    def __enter__(self) -> PeakRSS:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()


# --- requests and their checks --------------------------------------------------------------------------------------


def request_of(sample: Any, root: Path, inputs: str) -> dict[str, Any]:
    """The httpx arguments of one ``/score`` request for a sample."""
    if inputs == "path":
        return {"json": {"source": sample.source, "edited": sample.edited, "prompt": sample.prompt}}
    files = {
        "source": ("source", (root / sample.source).read_bytes()),
        "edited": ("edited", (root / sample.edited).read_bytes()),
    }
    return {"files": files, "data": {"prompt": sample.prompt}}


def same(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a server answer is the scorer's own (numbers within 1e-4, bbox within 1e-6, the rest equal)."""
    for key, value in want.items():
        if key in NUMBERS and isinstance(value, (int, float)):
            if not isinstance(got.get(key), (int, float)) or abs(got[key] - value) > 1e-4:
                return False
        elif key == "bbox":
            if len(got.get(key) or []) != 4 or max(abs(a - b) for a, b in zip(got[key], value, strict=True)) > 1e-6:
                return False
        elif got.get(key) != value:
            return False
    return True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def load_level(
    url: str, clients: int, total: int, samples: list[Any], requests: list[dict[str, Any]], expected: dict[str, Any]
) -> dict[str, Any]:
    """``total`` requests from ``clients`` concurrent clients; throughput, latency, wrong and failed answers."""
    import httpx

    before = httpx.get(f"{url}/health", timeout=30).json()
    latencies: list[float] = []
    wrong = failed = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def client(index: int) -> None:
        nonlocal wrong, failed
        with httpx.Client(base_url=url, timeout=120) as own:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                k = (n * 7 + index) % len(samples)
                start = time.perf_counter()
                try:
                    reply = own.post("/score", **requests[k])
                    ok = reply.status_code == 200
                    good = ok and same(reply.json()["results"][0], expected[samples[k].id])
                except Exception:
                    ok = good = False
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    failed += not ok
                    wrong += ok and not good

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    after = httpx.get(f"{url}/health", timeout=30).json()
    batches = after["batches"] - before["batches"]
    return {
        "clients": clients,
        "requests": total,
        "answered": len(latencies) - failed,
        "failed": failed,
        "wrong": wrong,
        "wall_s": wall,
        "throughput_rps": total / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "mean_batch": (after["scored"] - before["scored"]) / batches if batches else None,
        "scorer_busy": (after["busy_s"] - before["busy_s"]) / wall,
    }


def loop_seconds(scorer: Any, samples: list[Any], root: Path) -> float:
    """Seconds per pair of ``scorer(source, edited, prompt)`` one at a time over the samples."""
    start = time.perf_counter()
    for s in samples:
        scorer(root / s.source, root / s.edited, s.prompt)
    return (time.perf_counter() - start) / len(samples)


# --- abuse ----------------------------------------------------------------------------------------------------------


def png(size: tuple[int, int], box: tuple[int, int, int, int] | None = None, mode: str = "RGB") -> bytes:
    """A PNG of one colour (compresses to little), with a noisy box where given."""
    import numpy as np
    from PIL import Image

    img = Image.new(mode, size, (120, 130, 140) if mode == "RGB" else 128)
    if box is not None:
        left, top, width, height = box
        noise = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        img.paste(Image.fromarray(noise), (left, top))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def abuse(url: str, seconds: float, good: dict[str, Any], good_answer: dict[str, Any], workers: int = 12) -> dict:
    """An abusive client loop for ``seconds``: the statuses seen, and how many good requests were answered right."""
    import httpx

    big_source = png((4096, 4096))
    big_edited = png((4096, 4096), (1000, 1200, 300, 200))
    bomb = png((20_000, 20_000), mode="L")  # 400 megapixels: refused from the header
    rank16 = [("source", ("s.png", big_source))] + [("candidates", (f"c{i}.png", big_edited)) for i in range(16)]
    junk = os.urandom(15 * 1024 * 1024)

    def streamed():
        for _ in range(24):
            yield b"x" * (1024 * 1024)

    attacks = {
        "declared 40 MiB body": lambda c: c.post("/score", content=b"\0" * (40 * 1024 * 1024)),
        "streamed 24 MiB body": lambda c: c.post("/score", content=streamed(), headers=JSON),
        "15 MiB upload, no image": lambda c: c.post("/score", files={"source": ("a", junk), "edited": ("b", junk[:9])}),
        "pixel bomb": lambda c: c.post("/score", files={"source": ("a", bomb), "edited": ("b", bomb)}),
        "rank 16 × 4096²": lambda c: c.post("/rank", files=rank16, data={"prompt": "x"}),
        "base64 garbage": lambda c: c.post("/score", json={"source": {"base64": "!" * 8_000_000}, "edited": "x"}),
        "good": lambda c: c.post("/score", **good),
    }
    names = list(attacks)
    seen: dict[str, dict[str, int]] = {name: {} for name in names}
    good_ok = good_wrong = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        nonlocal good_ok, good_wrong
        step = index
        with httpx.Client(base_url=url, timeout=120) as own:
            while time.monotonic() < stop:
                name = names[step % len(names)]
                step += 1
                try:
                    reply = attacks[name](own)
                    status = str(reply.status_code)
                    if name == "good" and reply.status_code == 200:
                        right = same(reply.json()["results"][0], good_answer)
                        with lock:
                            good_ok += right
                            good_wrong += not right
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    seen[name][status] = seen[name].get(status, 0) + 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    return {"statuses": seen, "good_answered_right": good_ok, "good_answered_wrong": good_wrong}


# --- main -----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", type=Path, help="a trained baseline run folder")
    parser.add_argument("--root", type=Path, default=None, help="dataset root (default: the cached demo set)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=160, help="requests per level (at least 4 per client)")
    parser.add_argument("--samples", type=int, default=64, help="distinct demo samples the requests cycle through")
    parser.add_argument("--inputs", choices=("upload", "path"), default="upload", help="images uploaded or by path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the loop")
    parser.add_argument("--server-args", default="", help="extra `epaiqa serve` flags, e.g. '--max-batch 32'")
    parser.add_argument("--abuse", type=float, default=30.0, help="seconds of the abusive loop (0: skip)")
    parser.add_argument("--out", type=Path, default=None, help="JSON record")
    args = parser.parse_args(argv)

    from benchmarks.common import demo_root, demo_samples, machine, set_threads
    from epaiqa.scoring.load import load_scorer

    set_threads(args.threads)
    root = args.root or demo_root()
    samples = demo_samples(root, args.samples)
    scorer = load_scorer(args.run)
    expected = {s.id: scorer(root / s.source, root / s.edited, s.prompt) for s in samples}  # also the warm-up
    requests = [request_of(s, root, args.inputs) for s in samples]
    loop = [loop_seconds(scorer, samples, root)]
    record: dict[str, Any] = {"machine": machine(), "run": str(args.run), "root": str(root), "inputs": args.inputs}
    server = ServerProcess(args.run, root, args.server_args.split(), args.threads)
    levels = []
    try:
        for _ in range(2):  # warm-up: the server's first batches
            load_level(server.url, 2, 8, samples, requests, expected)
        for clients in (int(c) for c in args.clients.split(",")):
            level = load_level(server.url, clients, max(args.requests, 4 * clients), samples, requests, expected)
            levels.append(level)
            print(json.dumps(level), file=sys.stderr, flush=True)
    finally:
        server.stop()
    loop.append(loop_seconds(scorer, samples, root))
    loop_rps = 1 / statistics.median(loop)
    for level in levels:
        level["ratio_to_loop"] = level["throughput_rps"] / loop_rps
    record |= {"loop_pairs_per_s": loop_rps, "loop_s_per_pair": loop, "levels": levels}
    lines = [
        f"loop (load_scorer, one pair at a time): {loop_rps:.1f} pairs/s",
        "| clients | requests | answered | wrong | failed | req/s | p50 ms | p99 ms | mean batch | scorer busy "
        "| × loop |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in levels:
        lines.append(
            f"| {v['clients']} | {v['requests']} | {v['answered']} | {v['wrong']} | {v['failed']} | "
            f"{v['throughput_rps']:.1f} | {v['p50_ms']:.0f} | {v['p99_ms']:.0f} | "
            f"{v['mean_batch'] or 0:.1f} | {v['scorer_busy']:.0%} | {v['ratio_to_loop']:.2f} |"
        )
    if args.abuse > 0:
        fresh = ServerProcess(args.run, root, [], args.threads)
        try:
            time.sleep(1.0)
            with PeakRSS(fresh.pid) as rss:
                at_rest = rss.now()
                found = abuse(fresh.url, args.abuse, requests[0], expected[samples[0].id])
            import httpx

            after = httpx.post(f"{fresh.url}/score", timeout=120, **requests[0])
            time.sleep(2.0)
            found |= {
                "rss_at_rest_mib": at_rest / 2**20,
                "rss_after_mib": rss.now() / 2**20,
                "rss_peak_mib": rss.peak / 2**20,
                "answers_after": after.status_code == 200 and same(after.json()["results"][0], expected[samples[0].id]),
            }
        finally:
            fresh.stop()
        record["abuse"] = found
        lines.append(
            f"abuse ({args.abuse:g} s, default limits): server RSS {found['rss_at_rest_mib']:.0f} MiB at rest, "
            f"peak {found['rss_peak_mib']:.0f} MiB, {found['rss_after_mib']:.0f} MiB after; "
            "good requests answered right during it: "
            f"{found['good_answered_right']} (wrong {found['good_answered_wrong']}); answers after: "
            f"{found['answers_after']}"
        )
        lines.append("statuses: " + json.dumps(found["statuses"]))
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
