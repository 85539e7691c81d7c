"""``epaiqa`` command line: validate, prepare, demo-data, report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from epaiqa.errors import EPAIQAError


def _validate(args: argparse.Namespace) -> int:
    from epaiqa.data.manifest import validate
    from epaiqa.data.splits import subset_members

    samples, problems = validate(args.root, check_images=not args.no_images)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problems in {Path(args.root)}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{task} {len(ids)}" for task, ids in subset_members(samples).items())
    checked = (
        "manifest only"
        if args.no_images
        else f"{len({s.source for s in samples} | {s.edited for s in samples})} images"
    )
    print(f"ok: {len(samples)} samples ({checked}); scored: {sizes}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from epaiqa.data.prepare import prepare

    stats, sizes = prepare(args.root, seed=args.seed, test_fraction=args.test_fraction, group_by=args.group_by)
    print(stats.summary())
    for task, parts in sizes.items():
        print(f"{task}: train {parts['train']}, test {parts['test']}")
    print(f"wrote {Path(args.root) / 'manifest.jsonl'} and {Path(args.root) / 'splits.json'}")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from epaiqa.data.demo import generate_demo_set

    out = Path(args.out)
    if (out / "manifest.jsonl").exists() and not args.force:
        print(f"error: {out} already holds a dataset (pass --force to overwrite)", file=sys.stderr)
        return 1
    generate_demo_set(out, n=args.n, seed=args.seed, size=args.size)
    print(f"wrote a synthetic demo set of {args.n} samples to {out} (see {out / 'README.txt'})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from epaiqa.eval.report import collect, log_to_wandb, scalars_to_markdown, to_markdown, write_report

    report = collect(args.dirs)
    if not report.tables and not report.scalars and not report.failed:
        print(f"error: no results.json under {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "report"
    for task, table in report.tables.items():
        print(to_markdown(task, table, report.runs[task]))
    for task, rows in report.scalars.items():
        print(scalars_to_markdown(task, rows))
    written = write_report(report, out)
    for failure in report.failed:
        print(f"FAILED {failure['dir']}: {failure.get('error', '?')}")
    for path in report.unreadable:
        print(f"unreadable: {path}", file=sys.stderr)
    if args.wandb:
        import wandb

        wandb.init(project="epaiqa", job_type="report", dir=str(out))
    if log_to_wandb(report):
        print("logged the tables to the active W&B run")
    if args.wandb:
        wandb.finish()
    print(f"wrote {len(written)} files to {out}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="epaiqa", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a dataset root: every manifest line and every image")
    v.add_argument("root")
    v.add_argument("--no-images", action="store_true", help="check the manifest only, do not open images")
    v.set_defaults(func=_validate)

    pr = sub.add_parser("prepare", help="clean ratings.csv into the manifest's mos fields and build splits.json")
    pr.add_argument("root")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--test-fraction", type=float, default=0.2)
    pr.add_argument("--group-by", choices=("source", "id"), default="source")
    pr.set_defaults(func=_prepare)

    d = sub.add_parser("demo-data", help="generate the synthetic demo PAI set")
    d.add_argument("--out", required=True)
    d.add_argument("--n", type=int, default=3000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--size", type=int, default=192, help="side of the square images in pixels")
    d.add_argument("--force", action="store_true")
    d.set_defaults(func=_demo_data)
    rp = sub.add_parser("report", help="Tables 1-2 layout (CSV + markdown) from run folders")
    rp.add_argument("dirs", nargs="+", help="run or multirun folders (searched for results.json)")
    rp.add_argument("--out", help="where to write <task>.csv and <task>.md (default: FIRST_DIR/report)")
    rp.add_argument("--wandb", action="store_true", help="log the tables to a new W&B run (offline unless WANDB_MODE)")
    rp.set_defaults(func=_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; project errors become one message and exit status 1."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except EPAIQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
