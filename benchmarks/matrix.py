"""The demo matrix (12 baselines × harmony and naturalness): its wall time and where each job's time goes.

    python -m benchmarks.matrix --run                  # both sweeps (profile=demo_matrix) into multirun/matrix-<time>/
    python -m benchmarks.matrix multirun/A multirun/B  # the split of sweeps that ran before

``--run`` runs ``python run.py -m experiment=baseline_<task> "baseline=glob(*)" profile=demo_matrix`` for each task
(extra overrides after ``--``), timing each sweep's wall clock. For every job it prints the phases its
``results.json`` records (:mod:`epaiqa.timing`): set-up (building the data, validating the root, building the
model and trainer), waiting for batches (data), training compute, validation compute, test compute (the test
split and the training-split metrics), other (checkpoints, loggers, Lightning's fit start-up); per sweep, the
wall clock beyond the jobs' own (Python start-up, imports, Hydra). The last column is the job's test SRCC, so the
table also shows whether the budget still separates the methods. ``--json FILE`` keeps it all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("harmony", "naturalness")
#: the columns of the split: name → the timing keys summed into it
PHASES = {
    "setup": ("setup_data", "setup_model"),
    "data": ("train_data", "validation_data", "test_data"),
    "train": ("train_compute",),
    "val": ("validation_compute",),
    "test": ("test_compute",),
    "other": ("other",),
}


def run_sweeps(tasks: list[str], out: Path, extra: list[str]) -> dict[str, float]:
    """Run one sweep per task into ``out/<task>``; the wall seconds of each."""
    walls = {}
    for task in tasks:
        command = [
            sys.executable,
            str(ROOT / "run.py"),
            "-m",
            f"experiment=baseline_{task}",
            "baseline=glob(*)",
            "profile=demo_matrix",
            f"hydra.sweep.dir={out / task}",
            *extra,
        ]
        print("$", " ".join(command[1:]), file=sys.stderr, flush=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=False)
        walls[str(out / task)] = time.perf_counter() - start
    return walls


def job_rows(sweep: Path) -> list[dict[str, Any]]:
    """One row per job of a sweep folder: model, task, phases (s), total (s), test SRCC."""
    rows = []
    for path in sorted(sweep.rglob("results.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        timing = record.get("timing") or {}
        row = {"job": str(path.parent.relative_to(sweep)), "model": record["model"], "task": record["task"]}
        row |= {phase: sum(timing.get(k, 0.0) for k in keys) for phase, keys in PHASES.items()}
        row["total"] = timing.get("total", float("nan"))
        test = record.get("test") or {}
        row["srcc"] = (test.get("all") or test).get("srcc")
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The split as markdown, with a sum row and each phase's share of the jobs' total."""
    head = ["model", "task", *PHASES, "total", "test SRCC"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in rows:
        cells = [row["model"], row["task"], *(f"{row[p]:.1f}" for p in [*PHASES, "total"])]
        cells.append("—" if row["srcc"] is None else f"{row['srcc']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    total = sum(r["total"] for r in rows) or 1.0
    sums = [f"**{sum(r[p] for r in rows):.0f}** ({sum(r[p] for r in rows) / total:.0%})" for p in PHASES]
    lines.append("| **all jobs** | | " + " | ".join(sums) + f" | **{total:.0f}** | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.matrix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep folders to read (instead of --run)")
    parser.add_argument("--run", action="store_true", help="run the matrix first")
    parser.add_argument("--tasks", default=",".join(TASKS), help="tasks to sweep with --run")
    parser.add_argument("--out", type=Path, default=None, help="folder of the --run sweeps")
    parser.add_argument("--json", type=Path, default=None, help="write rows and wall times as JSON")
    args, extra = parser.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    if not args.run and not args.sweeps:
        parser.error("give sweep folders or --run")
    walls: dict[str, float] = {}
    sweeps = list(args.sweeps)
    if args.run:
        out = args.out or ROOT / "multirun" / time.strftime("matrix-%Y-%m-%d_%H-%M-%S")
        tasks = [t for t in args.tasks.split(",") if t]
        walls = run_sweeps(tasks, out, extra)
        sweeps += [out / t for t in tasks]
    rows = [row for sweep in sweeps for row in job_rows(sweep)]
    print(table(rows))
    for sweep in sweeps:
        if str(sweep) in walls:
            jobs = sum(r["total"] for r in job_rows(sweep))
            wall = walls[str(sweep)]
            print(f"{sweep}: wall {wall:.0f} s = jobs {jobs:.0f} s + outside the jobs {wall - jobs:.0f} s")
    if walls:
        print(f"matrix wall time: {sum(walls.values()):.0f} s ({sum(walls.values()) / 60:.1f} min)")
    if args.json:
        args.json.write_text(json.dumps({"walls": walls, "rows": rows}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
