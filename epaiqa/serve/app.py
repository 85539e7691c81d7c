"""The server's routes: ``/score``, ``/rank``, ``/health``, ``/info``, the page at ``/`` and the root's samples.

Why FastAPI with one asyncio batcher and not LitServe: LitServe batches per endpoint (each ``LitAPI`` has its own
``max_batch_size`` / ``batch_timeout`` and its own ``setup``, so ``/score`` and ``/rank`` would each load the
model and never share a batch), one request is one batch item (a ``/rank`` of N candidates could not be split
into N pairs of the shared batch), and its scaling runs ``workers_per_device`` worker processes, each with its
own copy of the model. Here one process holds one scorer; every item of every request of every endpoint goes
through one bounded queue into one ``score_pairs`` call at a time, and the limits (body bytes, pixels, prompt,
candidates, time, queue, API key) are ours to set and to answer in one error shape.

Routes:

- ``POST /score``: one or many items → ``{"model", "task", "results": [answer, ...]}``;
- ``POST /rank``: one source and prompt, N candidates → their answers, ``ranking`` (indices, best first),
  ``best``, and ``by`` (what was compared: a dimension's score, or the scorer's ``reward``);
- ``GET /health``: liveness and the batcher's counts; ``GET /info``: the model, its dimensions, the run folder,
  the settings and limits;
- ``GET /`` (and ``/app.js``, ``/app.css``): the local page (``static/``, no network needed);
- ``GET /samples``, ``GET /files/PATH``: the samples of ``--root``'s manifest and their images, for the page.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from epaiqa.data.manifest import resolve_inside
from epaiqa.errors import EPAIQAError
from epaiqa.serve.batcher import Batcher
from epaiqa.serve.errors import RequestError, bad
from epaiqa.serve.guard import Guard
from epaiqa.serve.inputs import Uploads
from epaiqa.serve.parse import Item, Parsed, parse_rank, parse_score
from epaiqa.serve.results import describe, dimensions_of, main_dimension, rank_value, ranking, shape
from epaiqa.serve.settings import Settings

STATIC = Path(__file__).with_name("static")
#: what ``/files`` serves from the root: image files only
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: the most samples ``/samples`` lists
MAX_LISTED = 500
#: the page's files: route → (file in static/, media type)
PAGES = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/app.css": ("app.css", "text/css"),
}


def error_response(error: RequestError) -> JSONResponse:
    """The JSON answer of a refusal."""
    return JSONResponse(error.body(), status_code=error.status)


def scorer_error(exc: BaseException, item: Item, files: tuple[Path, Path]) -> RequestError:
    """A scorer's failure on one pair as a refusal naming its field (server paths replaced by field names)."""
    if isinstance(exc, RequestError):
        return exc
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    field = None
    for path, name in ((files[1], item.field("edited")), (files[0], item.field("source"))):
        for shown in {str(path), str(path.resolve())}:
            if shown in message:
                message, field = message.replace(shown, name), field or name
    if isinstance(exc, EPAIQAError):
        if message.startswith("bbox:"):
            field = item.field("bbox")
        return RequestError(422, message, field or item.field("edited"))
    return RequestError(500, f"the scorer failed on this pair ({type(exc).__name__}: {message})", None)


def create_app(scorer: Any, settings: Settings) -> Guard:
    """The server's ASGI app for a loaded scorer (wrapped in its :class:`~epaiqa.serve.guard.Guard`)."""
    known = dimensions_of(scorer)
    main = main_dimension(scorer)
    model = describe(scorer)
    batcher = Batcher(scorer.score_pairs, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queue)
    parse_slots = asyncio.Semaphore(settings.parse_slots)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["tmp"] = Path(tempfile.mkdtemp(prefix="epaiqa-serve-"))
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            shutil.rmtree(state["tmp"], ignore_errors=True)

    api = FastAPI(title="epaiqa serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.batcher = batcher

    @api.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        field = "path" if exc.status_code in (404, 405) else "body"
        return error_response(RequestError(exc.status_code, str(exc.detail), field))

    @api.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        return error_response(RequestError(500, f"internal error ({type(exc).__name__}: {exc})", None))

    async def scored(parsed: Parsed, uploads: Uploads) -> list[dict[str, Any]]:
        pairs = [
            {"source": str(src), "edited": str(edited), "prompt": item.prompt, "bbox": item.bbox}
            for item, (src, edited) in zip(parsed.items, parsed.files, strict=True)
        ]
        for _ in pairs:
            uploads.hold()
        outcomes = await batcher.score(pairs, uploads.release)
        results = []
        for item, files, outcome in zip(parsed.items, parsed.files, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise scorer_error(outcome, item, files)
            results.append(shape(outcome, known, parsed.dimensions))
        return results

    async def handle(request: Request, parse: Any) -> tuple[Parsed, list[dict[str, Any]]]:
        uploads = Uploads(state["tmp"])
        try:
            with batcher.arriving():
                async with parse_slots:
                    parsed = await parse(request, uploads)
            return parsed, await scored(parsed, uploads)
        finally:
            uploads.close()

    @api.post("/score")
    async def score(request: Request) -> JSONResponse:
        _, results = await handle(request, lambda r, u: parse_score(r, settings, u, known))
        return JSONResponse({"model": model["model"], "task": main, "results": results})

    @api.post("/rank")
    async def rank(request: Request) -> JSONResponse:
        parsed, results = await handle(request, lambda r, u: parse_rank(r, settings, u, known, main))
        assert parsed.by is not None
        if parsed.by == "reward" and all(rank_value(r, "reward", main) is None for r in results):
            raise bad("by", "this run's scorer gives no reward; rank by a dimension instead", 422)
        order = ranking(results, parsed.by, main)
        for place, index in enumerate(order, 1):
            results[index]["rank"] = place
        return JSONResponse(
            {"model": model["model"], "by": parsed.by, "ranking": order, "best": order[0], "results": results}
        )

    @api.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queued": batcher.queued, **batcher.counts.public()}

    @api.get("/info")
    async def info() -> dict[str, Any]:
        return {**model, "settings": settings.public(), "endpoints": ["/score", "/rank", "/health", "/info"]}

    @api.get("/samples")
    async def samples() -> dict[str, Any]:
        if settings.root is None:
            return {"root": None, "samples": []}
        if "samples" not in state:
            state["samples"] = await asyncio.to_thread(list_samples, settings.root)
        return {"root": str(settings.root), **state["samples"]}

    @api.get("/files/{relpath:path}")
    async def files(relpath: str) -> FileResponse:
        if settings.root is None:
            raise bad("path", "this server was started without --root: it serves no files", 404)
        try:
            path = resolve_inside(settings.root, relpath)
        except ValueError as exc:
            raise bad("path", f"refused: {exc}", 403) from None
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            raise bad("path", f"{relpath!r}: no such image under --root", 404)
        return FileResponse(path)

    for route, (name, media) in PAGES.items():
        api.add_api_route(route, static_page(name, media), methods=["GET"], include_in_schema=False)

    return Guard(api, settings)


def static_page(name: str, media: str) -> Any:
    """A route answering the page file ``static/NAME`` (read on each request: small, and edits show at once)."""

    async def page() -> Response:
        return Response((STATIC / name).read_bytes(), media_type=media, headers={"cache-control": "no-cache"})

    return page


def list_samples(root: Path) -> dict[str, Any]:
    """The first samples of a root's manifest for the page (none, with the reason, when it cannot be read)."""
    from epaiqa.data.manifest import load_manifest

    try:
        found = load_manifest(root, check_images=False, check_splits=False)
    except (EPAIQAError, OSError) as exc:
        return {"samples": [], "error": str(exc).splitlines()[0]}
    rows = [
        {"id": s.id, "source": s.source, "edited": s.edited, "prompt": s.prompt, "bbox": list(s.bbox)}
        for s in found[:MAX_LISTED]
    ]
    return {"samples": rows, "total": len(found)}
