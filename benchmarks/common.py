"""What every benchmark of the suite shares: alternating timing, min/median summaries, ratios, the machine.

This machine is shared and noisy, so no benchmark reports seconds as its result: each compares two (or more)
ways of doing the same work, timed in one process with the sides alternating (A B A B …) over several
repetitions after a warm-up, and reports the ratio of their minimum and of their median times. Seconds are
kept in the JSON record only as context.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the demo set the suite reads when it is already generated (the default run's cache); else one is generated
DEMO_CACHE = Path(os.environ.get("EPAIQA_CACHE", "/tmp/epaiqa-cache-fresh")).expanduser()


@dataclass
class Side:
    """One way of doing the work: ``run(setup())`` is timed, ``setup()`` (untimed) prepares its argument.

    ``reports=True``: ``run`` times itself and returns the seconds of one repetition (e.g. the mean step time of
    a few training steps, measured inside a training loop, without the loop's start-up).
    """

    run: Callable[[Any], Any]
    setup: Callable[[], Any] | None = None
    reports: bool = False


def reporting(fn: Callable[[], float]) -> Side:
    """A side whose callable measures itself and returns the seconds of one repetition."""
    return Side(lambda _: fn(), reports=True)


def as_side(side: Side | Callable[[], Any]) -> Side:
    """A :class:`Side` of a plain callable (no setup)."""
    return side if isinstance(side, Side) else Side(lambda _: side())


def alternate(sides: Mapping[str, Side | Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each side per repetition, the sides run in turn (A B A B …) after ``warmup`` untimed rounds."""
    built = {name: as_side(side) for name, side in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in built}
    for round_ in range(warmup + repeats):
        for name, side in built.items():
            arg = side.setup() if side.setup is not None else None
            start = time.perf_counter()
            out = side.run(arg)
            elapsed = float(out) if side.reports else time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


@dataclass
class Stats:
    """Minimum and median of one side's repetitions (seconds), and how many there were."""

    min: float
    median: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        return cls(min(values), statistics.median(values), len(values))


@dataclass
class Result:
    """One row of the suite: ``ratio`` = ``numerator`` time / ``denominator`` time, by min and by median.

    ``goal`` states the target in words (e.g. ``≤ 1.05``), ``met`` whether the median ratio meets it (None: no
    goal); ``per`` says what one timed repetition is (one batch, one image, …).
    """

    benchmark: str
    name: str
    numerator: str
    denominator: str
    ratio_min: float
    ratio_median: float
    seconds: dict[str, Stats]
    per: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ratio_result(
    benchmark: str,
    name: str,
    times: Mapping[str, list[float]],
    numerator: str,
    denominator: str,
    *,
    per: str = "",
    goal: str = "",
    check: Callable[[float], bool] | None = None,
    note: str = "",
    invert: bool = False,
    **extra: Any,
) -> Result:
    """The row comparing two sides of :func:`alternate`'s times.

    ``invert=True`` reports denominator/numerator times instead (a throughput ratio: how much of the
    denominator's rate the numerator keeps); ``check(ratio_median)`` decides whether the goal is met.
    """
    stats = {k: Stats.of(list(v)) for k, v in times.items()}
    a, b = stats[numerator], stats[denominator]
    r_min, r_med = (b.min / a.min, b.median / a.median) if invert else (a.min / b.min, a.median / b.median)
    return Result(
        benchmark,
        name,
        numerator,
        denominator,
        r_min,
        r_med,
        {k: stats[k] for k in times},
        per=per,
        goal=goal,
        met=None if check is None else bool(check(r_med)),
        note=note,
        extra=dict(extra),
    )


def median_ratio(times: Mapping[str, list[float]], a: str, b: str) -> float:
    """Median seconds of side ``a`` over those of side ``b``."""
    return statistics.median(times[a]) / statistics.median(times[b])


def set_threads(threads: int | None) -> int:
    """Torch's intra-op threads (None: leave as is); returns the number in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> str:
    """``<commit>`` or ``<commit>+dirty`` of the repository (``unknown`` outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """Where and when the suite ran: CPU, core count, load, threads, versions, date, commit."""
    import torch

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_1min_at_start": load,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_state(),
    }


def demo_root(n: int = 200) -> Path:
    """The default run's cached 3000-sample demo set if present, else a small one generated under /tmp."""
    from epaiqa.data.demo import ensure_demo_set

    cached = DEMO_CACHE / "demo-v1-n3000-seed0-size192"
    if (cached / "splits.json").is_file():
        return cached
    return ensure_demo_set(Path("/tmp") / "epaiqa-bench", n=n, seed=0, size=192)


def demo_samples(root: Path, count: int, task: str | None = None) -> list[Any]:
    """The first ``count`` samples of a root (with a ``task`` rating when given), read without decoding images."""
    from epaiqa.data.manifest import load_manifest

    samples = load_manifest(root, check_images=False, check_splits=False)
    if task is not None:
        samples = [s for s in samples if s.score(task) is not None]
    return samples[:count]


def markdown_table(results: list[Result]) -> str:
    """The suite's results as a markdown table (ratio by median, by min, goal, met)."""
    lines = [
        "| benchmark | comparison | ratio (median) | ratio (min) | per | goal | met |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for r in results:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        ratios = f"{r.ratio_median:.3f} | {r.ratio_min:.3f}"
        lines.append(f"| {r.benchmark} | {r.name} | {ratios} | {r.per} | {r.goal or '—'} | {met} |")
    return "\n".join(lines)
