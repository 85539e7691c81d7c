"""``epaiqa`` command line: every subcommand (validate, prepare, score, evaluate, report, import, serve, app, …)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from epaiqa.errors import EPAIQAError

#: Smallest demo set and image side `demo-data` accepts (the generator needs 8 samples for its splits).
MIN_DEMO_N = 8
MIN_DEMO_SIZE = 16


def _root_error(root: str) -> str | None:
    """Why ``root`` cannot be a dataset root (None if it is a folder), in one line."""
    path = Path(root)
    if path.is_dir():
        return None
    return f"{path}: {'is not a directory' if path.exists() else 'dataset root not found'}"


def _validate(args: argparse.Namespace) -> int:
    from epaiqa.data.manifest import validate
    from epaiqa.data.splits import subset_members

    if (message := _root_error(args.root)) is not None:
        print(f"error: {message}", file=sys.stderr)
        return 1
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
    from epaiqa.data.prepare import prepare, split_parameters

    if (message := _root_error(args.root)) is not None:
        print(f"error: {message}", file=sys.stderr)
        return 1
    root = Path(args.root)
    given = {"seed": args.seed, "test_fraction": args.test_fraction, "group_by": args.group_by}
    parameters, kept = split_parameters(root, given, args.resplit)
    stats, sizes = prepare(root, **given, resplit=args.resplit)
    print(stats.summary())
    for task, parts in sizes.items():
        print(f"{task}: train {parts['train']}, test {parts['test']}")
    how = "kept from the existing splits.json" if kept else "a new split"
    split = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in parameters.items())
    print(f"split: {split} ({how}; --resplit to split again)")
    print(f"wrote {root / 'manifest.jsonl'} and {root / 'splits.json'} (previous versions kept as numbered *.bak)")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from epaiqa.data.demo import generate_demo_set

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: {out}: exists and is not a directory", file=sys.stderr)
        return 1
    if (out / "manifest.jsonl").exists() and not args.force:
        print(f"error: {out} already holds a dataset (pass --force to overwrite)", file=sys.stderr)
        return 1
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # an impossible path fails here, naming itself
    try:
        generate_demo_set(out, n=args.n, seed=args.seed, size=args.size)
    except BaseException:
        if created:  # leave no half-written folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    print(f"wrote a synthetic demo set of {args.n} samples to {out} (see {out / 'README.txt'})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from epaiqa.report.tables import collect, log_to_wandb, scalars_to_markdown, to_markdown, write_report

    report = collect(args.dirs)
    if not (report.tables or report.scalars or report.failed or report.judged or report.preferences):
        print(f"error: no results.json under {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "report"
    plcc = "plcc_logistic" if args.plcc == "logistic" else "plcc"
    for task, rows in (report.tables | report.ablations).items():
        print(to_markdown(task, rows, plcc))
    for task, rows in report.scalars.items():
        print(scalars_to_markdown(task, rows))
    if report.judged:  # Table 4: the judged explanations (epaiqa judge)
        from epaiqa.judge.demo import DEMO_KIND
        from epaiqa.report.table4 import demo_table4_markdown, table4_markdown, table4_rows

        if rows := table4_rows(report.judged):
            print(table4_markdown(rows))
        if demo := [j for j in report.judged if j.get("kind") == DEMO_KIND]:
            print(demo_table4_markdown(demo))
    if report.preferences:  # epaiqa evaluate --pairs
        from epaiqa.report.preferences import best_of_n_markdown, preference_markdown

        print(preference_markdown(report.preferences))
        print(best_of_n_markdown(report.preferences))
    written = write_report(report, out, plcc)
    if args.html:
        from epaiqa.report.html import write_html

        page, notes = write_html(report, args.dirs, out, plcc)
        written.append(page)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    for failure in report.failed:
        trace = f" (traceback: {Path(failure['dir']) / failure['traceback']})" if failure.get("traceback") else ""
        print(f"FAILED {failure['dir']}: {failure.get('error', '?')}{trace}")
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
    if report.failed and not args.allow_failed:
        print(f"error: {len(report.failed)} job(s) failed (--allow-failed to exit 0)", file=sys.stderr)
        return 1
    return 0


def _stats(args: argparse.Namespace) -> int:
    from epaiqa.data.manifest import load_manifest
    from epaiqa.report.figures import divergence_grid, write_dataset_figures

    if (message := _root_error(args.root)) is not None:
        print(f"error: {message}", file=sys.stderr)
        return 1
    samples = load_manifest(args.root, check_images=False, check_splits=False)
    out = Path(args.out) if args.out else Path("outputs") / "stats" / Path(args.root).resolve().name
    for path in write_dataset_figures(samples, out):
        print(f"wrote {path}")
    print(f"{len(samples)} samples; Fig. 7, the mean overall score with full prompt completion:")
    print(divergence_grid(samples).to_text())
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from epaiqa.io import atomic_write_csv
    from epaiqa.records.imported import SCORES_FILE, evaluate_predictions
    from epaiqa.records.results import print_record, write_record

    if (message := _root_error(args.root)) is not None:
        print(f"error: {message}", file=sys.stderr)
        return 1
    if args.pairs:
        return _evaluate_pairs(args)
    if args.task is None:
        print("error: --task is needed (harmony, naturalness or overall), or --pairs for preferences", file=sys.stderr)
        return 2
    imported = evaluate_predictions(
        args.root, args.task, args.predictions, args.name, args.split, args.field, args.full_reference
    )
    out = Path(args.out) if args.out else Path("outputs") / "imported" / f"{args.task}_{args.name}"
    atomic_write_csv(out / "predictions.csv", imported.rows)
    atomic_write_csv(out / SCORES_FILE, [{"id": i, "score": v} for i, v in sorted(imported.scores.items())])
    write_record(out, imported.record)  # last: a record names a complete folder
    print_record(imported.record)
    if imported.outside_split:
        outside = f"samples outside the {args.task} {args.split} split"
        print(f"{imported.outside_split} predictions are for {outside}: not scored")
    if imported.record.train is not None:
        print("the training split is predicted too: a best-competitor candidate (experiment=best_competitor)")
    print(f"wrote {out / 'results.json'}")
    return 0


def _evaluate_pairs(args: argparse.Namespace) -> int:
    from epaiqa.io import atomic_write_json
    from epaiqa.records.preference_eval import evaluate_preferences
    from epaiqa.records.preference_metrics import PREFERENCE_RECORD
    from epaiqa.report.preferences import best_of_n_markdown, preference_markdown

    record = evaluate_preferences(args.root, args.predictions, args.name, args.field, args.task, args.epsilon_from)
    out = Path(args.out) if args.out else Path("outputs") / "preferences" / args.name
    atomic_write_json(out / PREFERENCE_RECORD, record)
    print(preference_markdown([record]))
    print(best_of_n_markdown([record]))
    print(f"groups from {record['groups_from']}; wrote {out / PREFERENCE_RECORD}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from epaiqa.data.manifest import MAX_PROMPT_CHARS
    from epaiqa.scoring.load import load_scorer

    single = args.source is not None or args.edited is not None
    if single == (args.manifest is not None) or (single and (args.source is None or args.edited is None)):
        print("error: give --source and --edited (one pair) or --manifest ROOT --out FILE (a dataset)", file=sys.stderr)
        return 2
    if args.manifest is not None and args.out is None:
        print("error: --manifest needs --out FILE (JSONL; a rerun resumes it)", file=sys.stderr)
        return 2
    if len(args.prompt) > MAX_PROMPT_CHARS:
        print(f"error: --prompt is {len(args.prompt):,} characters long; at most {MAX_PROMPT_CHARS:,}", file=sys.stderr)
        return 2
    scorer = load_scorer(args.checkpoint).to(args.device)
    if single:
        print(json.dumps(scorer(args.source, args.edited, args.prompt, args.bbox), indent=2))
        return 0
    if (message := _root_error(args.manifest)) is not None:
        print(f"error: {message}", file=sys.stderr)
        return 1
    scored, kept = scorer.score_manifest(args.manifest, args.out, args.batch_size)
    print(f"scored {scored} samples ({kept} kept from before) into {args.out} — {scorer.task} by {scorer.record.model}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from epaiqa.dashboard import build_report, build_workspace, can_save, dashboard_spec, find_offline_runs, save_online
    from epaiqa.io import atomic_write_json

    dirs = args.dirs or [d for d in ("outputs", "multirun") if Path(d).is_dir()]
    if not dirs:
        print("error: no outputs/ or multirun/ here: give --dirs RUN_DIRS", file=sys.stderr)
        return 1
    found = find_offline_runs(dirs)
    runs = [r for r in found if r.project == args.project]
    if not runs:
        others = f" (found runs of: {', '.join(sorted({r.project for r in found}))})" if found else ""
        print(f"error: no W&B runs of project {args.project} under {', '.join(dirs)}{others}", file=sys.stderr)
        return 1
    entity = args.entity or os.environ.get("WANDB_ENTITY") or ""
    workspace, report = build_workspace(args.project, entity, runs), build_report(args.project, entity, runs)
    out = Path(args.out) if args.out else Path(dirs[0]) / "wandb_dashboard.json"
    atomic_write_json(out, dashboard_spec(workspace, report))
    groups = ", ".join(sorted({r.group for r in runs if r.group})) or "no group"
    print(f"{len(runs)} runs of {args.project} ({groups}): wrote the workspace and report spec to {out}")
    if (reason := can_save()) is not None:
        print(f"not saved to W&B ({reason}): `wandb sync` the runs, then run this online to save the dashboard")
        return 0
    if not entity:
        print("error: saving to W&B needs --entity (or WANDB_ENTITY)", file=sys.stderr)
        return 1
    try:
        urls = save_online(workspace, build_report(args.project, entity, runs, bind=True))
    except Exception as exc:  # network, login or server refusal: one line, the spec is on disk
        reason = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: could not save to W&B ({type(exc).__name__}: {reason}); the spec is in {out}", file=sys.stderr)
        return 1
    print("saved: " + " ".join(urls))
    return 0


def _bbox(text: str) -> list[float]:
    """An argparse type: ``cx,cy,w,h`` as four numbers."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be four numbers cx,cy,w,h, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"must be four numbers cx,cy,w,h, got {text!r}")
    return values


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


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
    pr.add_argument("--seed", type=int, help="split seed (default: the existing split's, else 0)")
    pr.add_argument("--test-fraction", type=float, help="default: the existing split's, else 0.2")
    pr.add_argument("--group-by", choices=("source", "id"), help="default: the existing split's, else source")
    pr.add_argument("--resplit", action="store_true", help="split again (the test split changes)")
    pr.set_defaults(func=_prepare)

    d = sub.add_parser("demo-data", help="generate the synthetic demo PAI set")
    d.add_argument("--out", required=True)
    d.add_argument("--n", type=_int_at_least(MIN_DEMO_N), default=3000, help=f"samples (at least {MIN_DEMO_N})")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument(
        "--size",
        type=_int_at_least(MIN_DEMO_SIZE),
        default=192,
        help=f"side of the square images in pixels (at least {MIN_DEMO_SIZE})",
    )
    d.add_argument("--force", action="store_true")
    d.set_defaults(func=_demo_data)
    rp = sub.add_parser("report", help="the paper's tables (CSV + markdown) from run folders")
    rp.add_argument("dirs", nargs="+", help="run or multirun folders (searched for results.json)")
    rp.add_argument("--out", help="where to write <task>.csv and <task>.md (default: FIRST_DIR/report)")
    rp.add_argument("--wandb", action="store_true", help="log the tables to a new W&B run (offline unless WANDB_MODE)")
    rp.add_argument("--allow-failed", action="store_true", help="exit 0 even when some jobs failed")
    rp.add_argument(
        "--plcc",
        choices=["raw", "logistic"],
        default="raw",
        help="the PLCC the markdown tables show: raw, or after VQEG's 4-parameter logistic fit (the CSV has both)",
    )
    rp.add_argument("--html", action="store_true", help="also write report.html: the tables and the paper's figures")
    rp.set_defaults(func=_report)
    st = sub.add_parser("stats", help="the dataset figures of a root's manifest (the paper's Figs. 4-7) as PNG")
    st.add_argument("root", help="dataset root (manifest.jsonl)")
    st.add_argument("--out", help="folder for the PNGs (default: outputs/stats/<root name>)")
    st.set_defaults(func=_stats)
    ev = sub.add_parser("evaluate", help="score an external model's per-sample predictions like a run (kind: imported)")
    ev.add_argument("--root", required=True, help="dataset root (manifest.jsonl, splits.json)")
    ev.add_argument(
        "--task", help="harmony, naturalness or overall; with --pairs the dimension of the groups (default: all)"
    )
    ev.add_argument("--predictions", required=True, help="CSV with id,score (or pred) columns, or JSONL objects")
    ev.add_argument("--name", required=True, help="the model's name in the tables")
    ev.add_argument("--split", default="test", help="the split scored (default: test)")
    ev.add_argument("--out", help="run folder to write (default: outputs/imported/<task>_<name>)")
    ev.add_argument("--field", help="the column/key with the scores (default: score, else pred; e.g. harmony)")
    ev.add_argument(
        "--full-reference", action="store_true", help="the model saw the source image (an FR competitor candidate)"
    )
    ev.add_argument(
        "--pairs",
        action="store_true",
        help="preference accuracy (both tie protocols, group and ranking accuracy) and best-of-N on the root's "
        "preferences.jsonl, or on its edits that share a source and prompt",
    )
    ev.add_argument(
        "--epsilon-from",
        choices=["evaluated", "val"],
        default="evaluated",
        help="where the tie-calibrated accuracy's ε is chosen: on the evaluated pairs (EditReward-Bench's protocol) "
        "or on the groups of the val split",
    )
    ev.set_defaults(func=_evaluate)
    sc = sub.add_parser(
        "score", help="score your own edits with a trained run: a baseline, an EPAIQA stage or a best competitor"
    )
    sc.add_argument("checkpoint", help="a run folder or a checkpoint inside one (<run>/checkpoints/*.ckpt)")
    sc.add_argument("--source", help="the source image")
    sc.add_argument("--edited", help="the edited image")
    sc.add_argument("--prompt", default="", help="the editing prompt")
    sc.add_argument(
        "--bbox",
        type=_bbox,
        help="the edited region cx,cy,w,h in [0, 1] (default: stage-1 grounding if in the lineage, else the change)",
    )
    sc.add_argument("--manifest", metavar="ROOT", help="score every sample of a dataset root instead")
    sc.add_argument("--out", help="JSONL of id, score, level, task, every dimension (with --manifest; resumable)")
    sc.add_argument("--batch-size", type=_int_at_least(1), default=32)
    sc.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    sc.set_defaults(func=_score)
    db = sub.add_parser("dashboard", help="a W&B workspace and report comparing runs (saved when online)")
    db.add_argument("--project", required=True, help="the W&B project of the runs (logger.wandb.project: epaiqa)")
    db.add_argument("--entity", help="the W&B entity to save to (default: WANDB_ENTITY)")
    db.add_argument("--dirs", nargs="+", help="run or sweep folders with W&B run files (default: outputs multirun)")
    db.add_argument("--out", help="the spec's JSON file (default: FIRST_DIR/wandb_dashboard.json)")
    db.set_defaults(func=_dashboard)
    from epaiqa.converters.commands import add_commands as add_import  # import: public benchmarks → a dataset root
    from epaiqa.llm_commands import add_commands  # judge, cot: the LMM clients' subcommands
    from epaiqa.serve.commands import add_commands as add_serve  # serve, app: a run over HTTP and in a browser

    add_commands(sub)
    add_import(sub)
    add_serve(sub)
    return p


def _os_error(exc: OSError) -> str:
    """An OSError in one line naming its path(s)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; project and file-system errors become one message and exit status 1.

    Bad arguments exit with status 2 (argparse's usage error), before anything is written.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except EPAIQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
