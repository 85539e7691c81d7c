"""The ``epaiqa serve`` and ``epaiqa app`` subcommands (added to :func:`epaiqa.cli.parser` by :func:`add_commands`).

Start-up checks come before the model loads and each fails in one line on stderr, no traceback: a bad address or
a non-loopback one without ``EPAIQA_API_KEY`` (exit 2), a missing ``--root``, a port in use, a folder that is no
run (exit 1). The parser imports nothing heavy: FastAPI, uvicorn and torch load only when a server starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

#: flag → Settings field (flags left out keep the Settings default)
_LIMITS = {
    "max_batch": "max_batch",
    "max_wait_ms": "max_wait_ms",
    "max_upload_bytes": "max_upload_bytes",
    "max_pixels": "max_pixels",
    "max_prompt_chars": "max_prompt_chars",
    "max_candidates": "max_candidates",
    "timeout_s": "timeout_s",
    "max_queue": "max_queue",
    "max_requests": "max_requests",
}


def _at_least(low: float, kind: type = int) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            what = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"must be a {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    return parse


def _port(text: str) -> int:
    value = _at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0..65535 (0: a free one), got {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a finished run folder (or a checkpoint inside one), as `epaiqa score` takes")
    p.add_argument("--port", type=_port, default=8000, help="the port (default 8000; 0: any free port)")
    p.add_argument(
        "--root", help="a folder whose images requests may name by relative path (and the page's demo samples)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def add_commands(sub: Any) -> None:
    """Add ``serve`` and ``app`` to the CLI's subparsers."""
    s = sub.add_parser("serve", help="a batching HTTP scoring server of a trained run (/score, /rank, /info)")
    _common(s)
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to bind (default 127.0.0.1; any other needs an API key in EPAIQA_API_KEY)",
    )
    g = s.add_argument_group("batching and limits (docs/serving.md)")
    g.add_argument("--max-batch", type=_at_least(1), help="pairs scored in one batch, at most (default 16)")
    g.add_argument(
        "--max-wait-ms", type=_at_least(0, float), help="how long a batch waits to fill after its first pair (10)"
    )
    g.add_argument("--max-upload-bytes", type=_at_least(1), help="a request body's bytes (default 16 MiB)")
    g.add_argument(
        "--max-pixels", type=_at_least(64), help="one image's width × height (default EPAIQA_MAX_PIXELS or 4096²)"
    )
    g.add_argument("--max-prompt-chars", type=_at_least(1), help="one prompt's length (default 1000)")
    g.add_argument("--max-candidates", type=_at_least(1), help="candidates of /rank, items of /score (default 16)")
    g.add_argument("--timeout-s", type=_at_least(0.001, float), help="one request's time (default 60)")
    g.add_argument("--max-queue", type=_at_least(1), help="pairs waiting over all clients (default 256)")
    g.add_argument("--max-requests", type=_at_least(1), help="requests handled at once (default 64)")
    s.set_defaults(func=serve_command)

    a = sub.add_parser("app", help="a local web page scoring your edits with a trained run (on 127.0.0.1)")
    _common(a)
    a.add_argument("--open", action="store_true", help="open the page in the default browser")
    a.set_defaults(func=app_command)


def _fail(message: str, code: int = 1) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"error: {first}", file=sys.stderr)
    return code


def settings_of(args: argparse.Namespace, host: str) -> Any:
    """The server's settings from the command line (the API key from the environment)."""
    from epaiqa.data.images import max_pixels
    from epaiqa.serve.settings import Settings, api_key_from_env

    given = {field: getattr(args, flag) for flag, field in _LIMITS.items() if getattr(args, flag, None) is not None}
    if "max_pixels" not in given and os.environ.get("EPAIQA_MAX_PIXELS", "").strip():
        given["max_pixels"] = max_pixels()
    root = Path(args.root).resolve() if args.root else None
    return Settings(host=host, port=args.port, root=root, api_key=api_key_from_env(), **given)


def start(args: argparse.Namespace, host: str, page: bool) -> int:
    """Check the start-up input, bind, load the run, serve until stopped; the exit status."""
    from epaiqa.errors import EPAIQAError
    from epaiqa.serve.settings import bind_problem

    try:
        settings = settings_of(args, host)
    except EPAIQAError as exc:
        return _fail(str(exc), 2)
    if (problem := bind_problem(host, settings.api_key)) is not None:
        return _fail(problem, 2)
    if settings.root is not None and not settings.root.is_dir():
        return _fail(f"--root {args.root}: not a directory")
    if not Path(args.run).exists():
        return _fail(f"{args.run}: no such run folder")
    from epaiqa.serve.server import bind

    try:
        sock = bind(host, args.port)
    except EPAIQAError as exc:
        return _fail(str(exc))
    try:
        return _serve(args, settings, sock, page)
    except (EPAIQAError, OSError) as exc:
        return _fail(str(exc))
    finally:
        sock.close()


def _serve(args: argparse.Namespace, settings: Any, sock: Any, page: bool) -> int:
    from epaiqa.data.images import MAX_PIXELS_ENV
    from epaiqa.scoring.load import load_scorer
    from epaiqa.serve.app import create_app
    from epaiqa.serve.results import describe
    from epaiqa.serve.server import run, url_of

    os.environ[MAX_PIXELS_ENV] = str(settings.max_pixels)  # the scorer's own decoder holds the same limit
    scorer = load_scorer(args.run)
    if args.device != "cpu":
        scorer.to(args.device)
    app = create_app(scorer, settings)
    url = url_of(sock)
    model = describe(scorer)
    dims = ", ".join(model["dimensions"]) or "the edited region"
    print(f"{model['model']} ({model['kind']}: {dims}) from {model['run']}", file=sys.stderr)
    if page:
        print(f"open {url}/ in a browser (Ctrl-C stops)", file=sys.stderr)
        if args.open:
            import webbrowser

            webbrowser.open(f"{url}/")
    else:
        auth = "API key required" if settings.api_key else "no API key"
        print(
            f"serving on {url} (batches of up to {settings.max_batch}, {settings.max_wait_ms:g} ms wait; {auth}; "
            "Ctrl-C stops)",
            file=sys.stderr,
        )
    run(app, sock)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """``epaiqa serve RUN``: the scoring server."""
    return start(args, args.host, page=False)


def app_command(args: argparse.Namespace) -> int:
    """``epaiqa app RUN``: the same server on 127.0.0.1, for its page at ``/``."""
    for flag in _LIMITS:
        setattr(args, flag, None)
    return start(args, "127.0.0.1", page=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m epaiqa.serve serve|app RUN ...``: the two subcommands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m epaiqa.serve")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return int(args.func(args))
