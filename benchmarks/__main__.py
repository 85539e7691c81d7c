"""The benchmark suite: ``python -m benchmarks [NAME ...] [--quick] [--threads N] [--out FILE]``.

Every figure is a ratio of two ways of doing the same work, timed in this one process with the sides
alternating (A B A B …) over several repetitions; min and median are reported (see benchmarks/common.py).
Benchmarks (all by default, in this order):

- ``baselines``: a baseline in the zoo's LightningModule vs the raw pyiqa arch (forward, training step);
- ``data``: the dataset pipeline vs a raw PIL decode of the same pixels, per view;
- ``qalign``: Q-Align one-pass scoring, batched vs one at a time vs generate-and-parse (tiny, mini);
- ``readout``: stage 3's overall readout reusing the generation's KV cache vs re-encoding the images;
- ``four_dims``: ``epaiqa score``'s four dimensions from one encoding vs four passes;
- ``startup``: ``python run.py`` to its first training step and ``import epaiqa.train`` vs ``import epaiqa``;
- ``channels_last``: every baseline's training step (as ``profile=demo_matrix`` builds it) in NHWC vs NCHW;
- ``precision``: each LMM stage's training step (``mini``) in bf16 autocast vs fp32 on this CPU;
- ``recipe``: ``mini``'s stage-2 training step with and without each CPU speed lever (eager attention, LoRA
  dropout, tower cache).

The demo matrix's wall time and per-job split is ``python -m benchmarks.matrix`` (it runs the sweeps).

Prints a markdown table (the rows of BENCHMARKS.md) and writes a JSON record with the seconds behind each
ratio, the machine and the date. ``--threads 1`` (the default) keeps one torch thread: on a shared 2-core
machine two threads stall on each other when another process holds a core.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

BENCHMARKS = ("baselines", "data", "qalign", "readout", "four_dims", "startup", "channels_last", "precision", "recipe")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller batches")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="JSON record (default: print only)")
    parser.add_argument("--backbones", default="tiny,mini", help="LMM backbones of qalign/readout/four_dims")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default: each benchmark's)")
    parser.add_argument("--root", type=Path, default=None, help="dataset root (default: the cached demo set)")
    parser.add_argument("--count", type=int, default=None, help="images per repetition (data)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)

    from benchmarks.common import machine, markdown_table, set_threads

    if args.threads:  # the start-up benchmark's processes get the same setting
        set_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    info = machine()
    print(f"# {info['date']} · {info['cpu']} · {info['cores']} cores · torch threads {info['torch_threads']}")
    results = []
    durations = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.perf_counter()
        rows = module.run(
            quick=args.quick,
            backbones=args.backbones.split(","),
            repeats=args.repeats,
            root=args.root,
            count=args.count,
        )
        durations[name] = time.perf_counter() - start
        print(f"## {name} ({durations[name]:.0f} s)", file=sys.stderr)
        print(markdown_table(rows), file=sys.stderr)
        results.extend(rows)
    print(markdown_table(results))
    record = {
        "machine": info,
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "wall_s": durations,
        "results": [r.to_json() for r in results],
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record["results"]


if __name__ == "__main__":
    main()
