"""(f) Job start-up: ``python run.py`` to its first training step, ``import epaiqa.train`` and the commands that do
not train (``epaiqa report`` / ``stats`` on a missing folder, ``score --help``), vs ``import epaiqa``.

Each side is a fresh Python process, timed from just before it is started to the moment it reaches its point
(a timestamp it writes): ``import epaiqa`` (the package's ``__init__``: the interpreter's own start-up, nearly),
``import epaiqa.train`` (what ``run.py`` imports: Lightning, Hydra, torch, transformers through the task modules),
and ``python run.py`` — the default run (Stair-IQA on the ImageNet Lite0 backbone, the 3000-sample demo set
validated in full, CSV + offline W&B loggers) with ``eval_untrained=false`` — up to the first
``on_train_batch_start``, where the callback :class:`FirstStep` writes the time and stops the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Result, alternate, demo_root, ratio_result, reporting
from epaiqa.errors import EPAIQAError

NAME = "startup"


class FirstStepReached(EPAIQAError):
    """Raised by :class:`FirstStep` to end the run once its first training step starts."""


class FirstStep:
    """A Lightning callback (``+callbacks.first_step._target_=benchmarks.bench_startup.FirstStep``).

    At the first ``on_train_batch_start`` it writes ``time.time()`` to ``path`` and ends the run (the run then
    exits with status 1 and "error: first training step reached").
    """

    def __new__(cls, path: str) -> Any:
        from lightning.pytorch import Callback

        class _FirstStep(Callback):
            def on_train_batch_start(self, *args: Any) -> None:
                Path(path).write_text(repr(time.time()))
                raise FirstStepReached("first training step reached (benchmarks/bench_startup.py)")

        return _FirstStep()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline", WANDB_SILENT="true")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def time_import(module: str) -> float:
    """Seconds from starting ``python -c "import <module>"`` to the import's end."""
    code = f"import {module}, time; print(repr(time.time()))"
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"import {module} failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1]) - start


def time_cli(*args: str) -> float:
    """Seconds of a whole ``epaiqa ARGS`` process (``python -m epaiqa.cli``), start to exit, whatever its status."""
    start = time.time()
    subprocess.run([sys.executable, "-m", "epaiqa.cli", *args], cwd=ROOT, env=_env(), capture_output=True, text=True)
    return time.time() - start


#: commands that do not train, which must not import Lightning or transformers to answer
NON_TRAINING = {
    "report_missing": ("report", "/nonexistent/epaiqa-runs"),
    "stats_missing": ("stats", "/nonexistent/epaiqa-root"),
    "score_help": ("score", "--help"),
}


def time_first_step(root: Path, work: Path) -> float:
    """Seconds from starting ``python run.py`` (the default run) to its first training step."""
    marker = work / "first_step"
    marker.unlink(missing_ok=True)
    run_dir = work / f"run-{time.time_ns()}"
    argv = [
        sys.executable,
        "run.py",
        "eval_untrained=false",
        f"data.root={root}",
        f"hydra.run.dir={run_dir}",
        "+callbacks.first_step._target_=benchmarks.bench_startup.FirstStep",
        f"+callbacks.first_step.path={marker}",
    ]
    start = time.time()
    out = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True)
    if not marker.is_file():
        tail = out.stderr[-3000:]
        raise RuntimeError(f"run.py did not reach its first training step (exit {out.returncode}): {tail}")
    return float(marker.read_text()) - start


def run(quick: bool = False, repeats: int | None = None, root: Path | None = None, **_: Any) -> list[Result]:
    root = root or demo_root()
    repeats = repeats or (2 if quick else 3)
    with tempfile.TemporaryDirectory(prefix="epaiqa-bench-startup-") as tmp:
        work = Path(tmp)
        times = alternate(
            {
                "import_epaiqa": reporting(lambda: time_import("epaiqa")),
                "import_train": reporting(lambda: time_import("epaiqa.train")),
                "run_py": reporting(lambda: time_first_step(root, work)),
                **{name: reporting(lambda args=args: time_cli(*args)) for name, args in NON_TRAINING.items()},
            },
            repeats=repeats,
            warmup=1,
        )
    per = "one process"
    cli_rows = [
        ratio_result(NAME, f"epaiqa {' '.join(args)} / import epaiqa", times, name, "import_epaiqa", per=per)
        for name, args in NON_TRAINING.items()
    ]
    return [
        *cli_rows,
        ratio_result(NAME, "import epaiqa.train / import epaiqa", times, "import_train", "import_epaiqa", per=per),
        ratio_result(
            NAME,
            "python run.py to its first training step / import epaiqa",
            times,
            "run_py",
            "import_epaiqa",
            per=per,
        ),
        ratio_result(
            NAME,
            "python run.py to its first training step / import epaiqa.train",
            times,
            "run_py",
            "import_train",
            per=per,
        ),
    ]
