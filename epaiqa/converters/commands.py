"""The ``epaiqa import FORMAT SRC --out ROOT`` subcommand (added to the CLI's subparsers by :func:`add_commands`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from epaiqa.errors import EPAIQAError


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, EPAIQAError):
        paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{' -> '.join(paths)}:0: file: {reason}" if paths else reason
    return " ".join(str(exc).split("\n"))


def import_command(args: argparse.Namespace) -> int:
    """Convert; print one summary line (exit 0) or one ``error:`` line on stderr (exit 1)."""
    from epaiqa.converters import import_benchmark

    try:
        summary = import_benchmark(args.format, args.src, args.out, link=args.link, force=args.force)
    except (EPAIQAError, OSError, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(summary.line(args.format))
    return 0


def add_commands(sub: Any) -> None:
    """Add ``import`` to the CLI's subparsers."""
    from epaiqa.converters.registry import FORMATS

    formats = "; ".join(f"{name}: {about}" for name, (_, about) in FORMATS.items())
    p = sub.add_parser(
        "import",
        help="convert a public human-rated image-editing benchmark into a dataset root",
        description=f"Formats — {formats}. See docs/importing.md.",
    )
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT", help=", ".join(FORMATS))
    p.add_argument("src", metavar="SRC", help="the benchmark as downloaded: its folder (or one of its files)")
    p.add_argument("--out", required=True, metavar="ROOT", help="the dataset root to create")
    images = p.add_mutually_exclusive_group()
    images.add_argument("--copy", dest="link", action="store_false", help="copy images byte for byte (default)")
    images.add_argument("--link", dest="link", action="store_true", help="hard-link the images (SRC, ROOT on one disk)")
    p.add_argument("--force", action="store_true", help="replace ROOT if it exists")
    p.set_defaults(func=import_command, link=False)


def main(argv: Sequence[str] | None = None) -> int:
    """``epaiqa import ...`` on its own (the same parser the CLI gets)."""
    parser = argparse.ArgumentParser(prog="epaiqa")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
