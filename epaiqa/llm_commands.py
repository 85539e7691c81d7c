"""The ``epaiqa judge`` and ``epaiqa cot`` subcommands (added to :func:`epaiqa.cli.parser` by :func:`add_commands`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from epaiqa.errors import ConfigError
from epaiqa.llm.settings import ClientSettings, resolve_client

#: command-line flag → client setting
_FLAGS = {
    "base_url": "base_url",
    "api_key_env": "api_key_env",
    "concurrency": "concurrency",
    "timeout": "timeout_s",
    "max_retries": "max_retries",
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "rpm": "requests_per_minute",
    "tpm": "tokens_per_minute",
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_client_options(p: argparse.ArgumentParser) -> None:
    """Flags that override a client's ``conf/llm`` settings."""
    g = p.add_argument_group("client settings (override conf/llm/<client>.yaml)")
    g.add_argument("--base-url", help="an OpenAI-compatible server for openai/<model> clients (vLLM, SGLang, ...)")
    g.add_argument("--api-key-env", help="the environment variable holding the key (default: the provider's)")
    g.add_argument("--concurrency", type=_positive_int, help="requests in flight at once")
    g.add_argument("--timeout", type=float, help="seconds to wait for one reply")
    g.add_argument("--max-retries", type=int, help="retries of 429 / 5xx / timeouts / dropped connections")
    g.add_argument("--max-tokens", type=_positive_int, help="longest reply in tokens")
    g.add_argument("--temperature", type=float, help="sampling temperature (default: the provider's)")
    g.add_argument("--rpm", type=float, help="at most this many requests per minute")
    g.add_argument("--tpm", type=float, help="at most this many tokens per minute")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")


def client_settings(name: str, args: argparse.Namespace) -> ClientSettings:
    """A client's settings with the command line's overrides."""
    return resolve_client(name, **{setting: getattr(args, flag, None) for flag, setting in _FLAGS.items()})


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def demo_judge_command(args: argparse.Namespace) -> int:
    """``epaiqa judge RUN_DIR --judge-model demo``: the offline facet judge of the synthetic demo set."""
    from epaiqa.judge.demo import judge_demo
    from epaiqa.judge.run import JUDGE

    summary = judge_demo(args.run_dir, args.out, args.root)
    print(f"{summary['model']} judged by the demo judge (facets of the synthetic demo's explanations; demo set only)")
    print(f"  {summary['samples']} explanations, {_fmt(summary['unreadable_rate'])} of them with no facet readable")
    for name, facet in summary["facets"].items():
        within = ""
        if "within_one" in facet:
            within = f", within one level {_fmt(facet['within_one'])} (majority {_fmt(facet['majority_within_one'])})"
        print(
            f"  {name}: agreement {_fmt(facet['agreement'])} vs majority {_fmt(facet['majority_rate'])} "
            f"(always '{facet['majority_value']}'), unstated {_fmt(facet['unstated'])}, n={facet['n']}" + within
        )
    print(f"wrote {args.out or args.run_dir}/{JUDGE}")
    return 0


def _quotas(text: str) -> tuple[int, int, int]:
    """``--per-type``: ``appendix-f`` (106,88,106) or three non-negative counts ``N1,N2,N3``."""
    from epaiqa.judge.run import APPENDIX_F_QUOTAS

    if text == "appendix-f":
        return APPENDIX_F_QUOTAS
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--per-type: appendix-f or three counts N1,N2,N3 (types 1, 2, 3), got {text!r}")
    a, b, c = (int(p) for p in parts)
    return a, b, c


def judge_command(args: argparse.Namespace) -> int:
    """``epaiqa judge RUN_DIR --judge-model CLIENT``."""
    from epaiqa.judge.rules import CRITERIA
    from epaiqa.judge.run import JUDGE, VERDICTS, judge_run

    if args.judge_model == "demo":
        return demo_judge_command(args)
    settings = client_settings(args.judge_model, args)
    quotas = _quotas(args.per_type) if args.per_type else None
    summary = judge_run(
        args.run_dir, settings, args.out, args.root, args.repetitions, args.limit, args.progress, quotas
    )
    n = summary["n"]
    repetitions = f"{summary['repetitions']} repetitions a sample"
    print(f"{summary['model']} judged by {summary['judge']} ({repetitions}; {SCALE_NOTE})")
    print("  " + ", ".join(f"{c} {_fmt(summary[c])} (n={n[c]})" for c in CRITERIA))
    print(
        f"  samples: type 1 {n['type1']}, type 2 {n['type2']}, type 3 {n['type3']}; left out: {n['left_out']} in no "
        f"type, {n['no_reference_cot']} without a CoT standard answer, {n['not_in_manifest']} not in the manifest; "
        f"{n['unjudged']} with no valid verdict"
    )
    rate = summary["parse_failure_rate"]
    print(f"  parse failures: {summary['parse_failures']} of {summary['replies']} replies ({_fmt(rate)})")
    usage = summary["usage"]
    print(
        f"  {usage['requests']} requests, {usage['cached']} from the cache, "
        f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens"
        + (f", ${usage['cost_usd']:.4f}" if usage["cost_usd"] is not None else "")
    )
    out = args.out or args.run_dir
    print(f"wrote {out}/{JUDGE} and {out}/{VERDICTS}")
    return 0


SCALE_NOTE = "scores on [0, 1] = mean voted score / 2"


def cot_command(args: argparse.Namespace) -> int:
    """``epaiqa cot ROOT --annotators A,B,C``."""
    from epaiqa.cot_engine import PROVENANCE, run_cot_engine

    names = [a.strip() for a in args.annotators.split(",") if a.strip()]
    if len(names) < 2:
        print("error: --annotators needs at least two clients (the paper's three: A,B,C)", file=sys.stderr)
        return 2
    annotators = [client_settings(name, args) for name in names]
    result = run_cot_engine(
        args.root, annotators, args.seed, args.limit, args.overwrite, args.progress, split=args.split
    )
    print(result.summary())
    kept = "the previous one kept as a numbered .bak"
    print(f"wrote the kept pieces into {args.root}/manifest.jsonl ({kept}) and {args.root}/{PROVENANCE}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``judge`` and ``cot`` to the CLI's subparsers."""
    j = sub.add_parser("judge", help="judge a stage-3 run's explanations with an LMM (appendix F; Table 4)")
    j.add_argument("run_dir", help="a stage-3 run folder with explanations.jsonl (stage3_explain or explain_zeroshot)")
    j.add_argument(
        "--judge-model",
        required=True,
        help="client: openai/o3-mini, local/mini, a conf/llm name, ...; demo: the offline facet judge (demo set only)",
    )
    j.add_argument("--root", help="the dataset root (default: the one the run's results.json names)")
    j.add_argument("--out", help="where judge.json and the verdicts go (default: RUN_DIR)")
    j.add_argument("--repetitions", type=_positive_int, default=5, help="judge replies per sample (paper: 5)")
    j.add_argument("--limit", type=_positive_int, help="judge only the first N samples (a cost check)")
    j.add_argument(
        "--per-type",
        help="appendix-f (106,88,106: the paper's 300 reviewed samples) or N1,N2,N3: that many samples of each type, "
        "a seeded draw (default: every typed sample)",
    )
    add_client_options(j)
    j.set_defaults(func=judge_command)

    c = sub.add_parser("cot", help="write CoT pieces for the overall subset: annotate, cross-check (§4.3)")
    c.add_argument("root", help="the dataset root (manifest.jsonl, splits.json)")
    c.add_argument("--annotators", required=True, help="three clients, comma-separated: A,B,C")
    c.add_argument("--seed", type=int, default=0, help="seeds each sample's draw of its annotator")
    c.add_argument("--limit", type=_positive_int, help="annotate only the first N training samples")
    c.add_argument("--overwrite", action="store_true", help="also redo samples whose CoT is already complete")
    c.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="train: the CoT stage 3 learns; test: the judge's standard answers (never trained on)",
    )
    add_client_options(c)
    c.set_defaults(func=cot_command)
