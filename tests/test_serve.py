"""`epaiqa serve`: a real loopback HTTP server around a trained baseline, its batching, limits and refusals."""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from PIL import Image

from epaiqa.data.manifest import load_manifest
from epaiqa.scoring.load import load_scorer
from epaiqa.serve.app import create_app
from epaiqa.serve.commands import add_commands
from epaiqa.serve.server import ServerThread, bind
from epaiqa.serve.settings import API_KEY_ENV, Settings

#: small limits, so that each is crossed cheaply
LIMITS = {"max_upload_bytes": 256 * 1024, "max_pixels": 200_000, "max_candidates": 4, "max_prompt_chars": 50}
NUMBERS = ("score", "score_raw", "score_1_5", "reward")


@pytest.fixture(scope="module")
def run(baseline_sweep: Path) -> Path:
    """A naturalness baseline run (region view: without a box it scores where the images differ)."""
    return baseline_sweep / "naturalness"


@pytest.fixture(scope="module")
def scorer(run: Path) -> Any:
    return load_scorer(run)


@pytest.fixture(scope="module")
def samples(demo_root: Path) -> list[Any]:
    return load_manifest(demo_root)[:16]


@pytest.fixture(scope="module")
def expected(scorer: Any, samples: list[Any], demo_root: Path) -> dict[str, dict[str, Any]]:
    """The scorer's own answer for each sample (no box, the sample's prompt)."""
    return {s.id: scorer(demo_root / s.source, demo_root / s.edited, s.prompt) for s in samples}


@pytest.fixture(scope="module")
def server(scorer: Any, demo_root: Path):
    settings = Settings(root=demo_root, max_batch=8, max_wait_ms=20, **LIMITS)
    with ServerThread(create_app(scorer, settings)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def same_answer(got: dict[str, Any], want: dict[str, Any]) -> None:
    """The server's answer equals the scorer's own: numbers within 1e-4, everything else exactly."""
    for key, value in want.items():
        if key in NUMBERS and value is not None:
            assert got[key] == pytest.approx(value, abs=1e-4), key
        elif key == "bbox":
            assert got[key] == pytest.approx(value, abs=1e-6)
        else:
            assert got[key] == value, key
    assert got["dimensions"][want["task"]]["score"] == pytest.approx(want["score"], abs=1e-4)
    assert got["dimensions"][want["task"]]["level"] == want["level"]


def png_bytes(size: tuple[int, int], colour: int = 128) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, colour).save(out, "PNG")
    return out.getvalue()


def good_request(client: httpx.Client, sample: Any, want: dict[str, Any]) -> None:
    reply = client.post("/score", json={"source": sample.source, "edited": sample.edited, "prompt": sample.prompt})
    assert reply.status_code == 200, reply.text
    same_answer(reply.json()["results"][0], want)


def test_concurrent_clients_each_get_their_own_answers(client, server, samples, expected, demo_root: Path) -> None:
    """8 clients at once, by path, upload and base64: every answer is the scorer's own for that sample."""

    def one_client(index: int) -> int:
        checked = 0
        with httpx.Client(base_url=server.url, timeout=60) as own:
            for step in range(4):
                sample = samples[(index * 5 + step * 3) % len(samples)]
                src, edit = (demo_root / sample.source).read_bytes(), (demo_root / sample.edited).read_bytes()
                if step % 3 == 0:
                    body = {"source": sample.source, "edited": sample.edited, "prompt": sample.prompt}
                    reply = own.post("/score", json=body)
                elif step % 3 == 1:
                    files = {"source": ("s.jpg", src), "edited": ("e.jpg", edit)}
                    reply = own.post("/score", files=files, data={"prompt": sample.prompt})
                else:
                    b64 = {"base64": base64.b64encode(src).decode()}
                    uri = "data:image/jpeg;base64," + base64.b64encode(edit).decode()
                    reply = own.post("/score", json={"source": b64, "edited": uri, "prompt": sample.prompt})
                assert reply.status_code == 200, reply.text
                same_answer(reply.json()["results"][0], expected[sample.id])
                checked += 1
        return checked

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(one_client, range(8))) == 32
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["scored"] >= 32 and health["largest_batch"] >= 2  # batched across


def test_many_items_and_best_of_n(client, samples, expected, demo_root: Path) -> None:
    items = [{"source": s.source, "edited": s.edited, "prompt": s.prompt} for s in samples[:4]]
    reply = client.post("/score", json={"items": items, "dimensions": ["naturalness"]})
    assert reply.status_code == 200 and reply.json()["task"] == "naturalness"
    for got, s in zip(reply.json()["results"], samples[:4], strict=True):
        same_answer(got, expected[s.id])
    # many items in one multipart form: the images name uploaded parts
    a, b = samples[:2]
    names = {"s0": a.source, "e0": a.edited, "s1": b.source, "e1": b.edited}
    parts = {name: (name, (demo_root / path).read_bytes()) for name, path in names.items()}
    listed = [
        {"source": "@s0", "edited": "@e0", "prompt": a.prompt},
        {"source": "@s1", "edited": "@e1", "prompt": b.prompt},
    ]
    reply = client.post("/score", files=parts, data={"items": json.dumps(listed)})
    assert reply.status_code == 200, reply.text
    for got, s in zip(reply.json()["results"], (a, b), strict=True):
        same_answer(got, expected[s.id])
    missing = client.post("/score", files=parts, data={"items": json.dumps([{"source": "@s0", "edited": "@nope"}])})
    assert missing.status_code == 400 and missing.json()["field"] == "items[0].edited"
    # best of N: one source, the other samples' edits as candidates (uploaded), ranked by their scores
    source = samples[0]
    candidates = [s.edited for s in samples[:4]]
    files = [("source", ("s.jpg", (demo_root / source.source).read_bytes()))]
    files += [("candidates", (f"c{i}.jpg", (demo_root / c).read_bytes())) for i, c in enumerate(candidates)]
    ranked = client.post("/rank", files=files, data={"prompt": source.prompt, "bbox": "0.5,0.5,0.5,0.5"})
    assert ranked.status_code == 200, ranked.text
    body = ranked.json()
    scores = [r["score"] for r in body["results"]]
    assert body["by"] == "naturalness" and sorted(body["ranking"]) == [0, 1, 2, 3]
    assert [scores[i] for i in body["ranking"]] == sorted(scores, reverse=True) and body["best"] == body["ranking"][0]
    assert [body["results"][i]["rank"] for i in body["ranking"]] == [1, 2, 3, 4]
    assert all(r["bbox_source"] == "given" for r in body["results"])
    by_reward = client.post("/rank", json={"source": source.source, "candidates": candidates, "by": "reward"})
    assert by_reward.status_code == 200 and by_reward.json()["by"] == "reward"


def test_info_and_health(client, run: Path) -> None:
    info = client.get("/info").json()
    assert info["model"] == "wadiqam_nr" and info["kind"] == "baseline" and info["dimensions"] == ["naturalness"]
    assert info["run"] == str(run) and info["settings"]["max_candidates"] == 4
    assert info["settings"]["api_key_required"] is False and "api_key" not in info["settings"]
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for text in (page.text, client.get("/app.js").text, client.get("/app.css").text):  # offline: nothing fetched
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_every_bad_input_is_one_json_error_naming_its_field(client, samples, expected, demo_root: Path) -> None:
    s = samples[0]
    src, edit = (demo_root / s.source).read_bytes(), (demo_root / s.edited).read_bytes()
    ok = {"source": s.source, "edited": s.edited}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("not an image", {"files": {"source": ("s.jpg", b"hello"), "edited": ("e.jpg", edit)}}, 400, "source"),
        (
            "truncated",
            {"files": {"source": ("s.jpg", src), "edited": ("e.jpg", edit[: len(edit) // 2])}},
            400,
            "edited",
        ),
        ("missing field", {"json": {"source": s.source}}, 400, "edited"),
        ("prompt type", {"json": {**ok, "prompt": 3}}, 400, "prompt"),
        ("image type", {"json": {**ok, "source": 5}}, 400, "source"),
        ("items type", {"json": {"items": "x"}}, 400, "items"),
        ("item type", {"json": {"items": [ok, 7]}}, 400, "items[1]"),
        ("unknown field", {"json": {**ok, "bbx": [0.5, 0.5, 0.2, 0.2]}}, 400, "bbx"),
        ("bbox outside", {"json": {**ok, "bbox": [0.9, 0.5, 0.5, 0.5]}}, 400, "bbox"),
        ("bbox malformed", {"json": {"items": [{**ok, "bbox": [0.5, "a"]}]}}, 400, "items[0].bbox"),
        ("bbox text", {"files": {"source": ("s", src), "edited": ("e", edit)}, "data": {"bbox": "1,2"}}, 400, "bbox"),
        ("unknown dimension", {"json": {**ok, "dimensions": ["harmony"]}}, 400, "dimensions"),
        ("outside root", {"json": {**ok, "edited": "../../etc/passwd"}}, 403, "edited"),
        ("absolute path", {"json": {**ok, "source": "/etc/passwd"}}, 403, "source"),
        ("no such file", {"json": {**ok, "source": "source/nothing.jpg"}}, 404, "source"),
        ("bad base64", {"json": {**ok, "source": {"base64": "%%%"}}}, 400, "source"),
        ("not JSON", {"content": b"{oops", "headers": {"content-type": "application/json"}}, 400, "body"),
        ("wrong type", {"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "body"),
        ("prompt too long", {"json": {**ok, "prompt": "x" * 51}}, 413, "prompt"),
        ("too many items", {"json": {"items": [ok] * 5}}, 413, "items"),
        ("too many pixels", {"files": {"source": ("s", src), "edited": ("e", png_bytes((600, 400)))}}, 413, "edited"),
        ("too small", {"files": {"source": ("s", src), "edited": ("e", png_bytes((4, 4)))}}, 400, "edited"),
        ("upload too large", {"files": {"source": ("s", src), "edited": ("e", b"\0" * 300_000)}}, 413, "body"),
    ]
    for name, request, status, field in cases:
        reply = client.post("/score", **request)
        assert reply.status_code == status, (name, reply.text)
        assert set(reply.json()) == {"error", "field"} and reply.json()["field"] == field, (name, reply.json())
        assert reply.json()["error"], name
    rank_cases = [
        ({"source": s.source, "candidates": [s.edited] * 5}, 413, "candidates"),
        ({"source": s.source, "candidates": []}, 400, "candidates"),
        ({"source": s.source, "candidates": [s.edited, "x/../../y.png"]}, 403, "candidates[1]"),
        ({"source": s.source, "candidates": [s.edited], "by": "harmony"}, 400, "by"),
        ({"candidates": [s.edited]}, 400, "source"),
    ]
    for body, status, field in rank_cases:
        reply = client.post("/rank", json=body)
        assert (reply.status_code, reply.json()["field"]) == (status, field), reply.text
    assert client.get("/nowhere").json()["field"] == "path"
    good_request(client, s, expected[s.id])  # still serving, answers unchanged


def test_huge_uploads_are_cut_off_and_the_server_goes_on(client, server, samples, expected) -> None:
    # declared far over the limit: refused from the header; streamed without a length: cut at the limit
    reply = client.post("/score", content=b"x" * (2 * LIMITS["max_upload_bytes"] + 1))
    assert reply.status_code == 413 and reply.json()["field"] == "body"

    def chunks():
        for _ in range(64):
            yield b"x" * 16_384

    reply = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["field"] == "body"
    good_request(client, samples[1], expected[samples[1].id])


def test_paths_are_refused_without_a_root(scorer, samples, demo_root: Path) -> None:
    s = samples[0]
    with ServerThread(create_app(scorer, Settings())) as running:
        reply = httpx.post(f"{running.url}/score", json={"source": s.source, "edited": s.edited}, timeout=30)
        assert reply.status_code == 403 and reply.json()["field"] == "source" and "--root" in reply.json()["error"]
        absolute = {"source": str(demo_root / s.source), "edited": str(demo_root / s.edited)}
        assert httpx.post(f"{running.url}/score", json=absolute, timeout=30).status_code == 403


def test_the_api_key_is_required_when_set(scorer, samples, expected, demo_root: Path) -> None:
    s = samples[0]
    body = {"source": s.source, "edited": s.edited, "prompt": s.prompt}
    app = create_app(scorer, Settings(root=demo_root, api_key="s3cret"))
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=30) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}):
            reply = c.post("/score", json=body, headers=headers)
            assert reply.status_code == 401 and reply.json()["field"] == "authorization"
        assert c.get("/info").status_code == 401
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
            reply = c.post("/score", json=body, headers=headers)
            assert reply.status_code == 200
            same_answer(reply.json()["results"][0], expected[s.id])


class SlowScorer:
    """A stand-in scorer whose batches wait for ``gate`` (time limits and a full queue, without a model)."""

    task = "overall"
    folder = Path("/nowhere")
    record = SimpleNamespace(model="slow", lineage=[])

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.batches: list[int] = []

    def score_pairs(self, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.gate.wait(30)
        self.batches.append(len(pairs))
        return [{"task": "overall", "score": float(len(p["prompt"])), "level": "fair", "bbox": None} for p in pairs]


def test_request_time_limit_and_full_queue(demo_root: Path, samples) -> None:
    s = samples[0]
    fake = SlowScorer()
    settings = Settings(root=demo_root, timeout_s=1.0, max_queue=2, max_batch=1, max_wait_ms=0)
    item = {"source": s.source, "edited": s.edited}
    with ServerThread(create_app(fake, settings)) as running, httpx.Client(base_url=running.url, timeout=30) as c:
        started = time.monotonic()
        reply = c.post("/score", json=item)  # the scorer does not answer within 1 s
        assert reply.status_code == 504 and reply.json()["field"] == "request" and time.monotonic() - started < 5
        # the worker still holds that pair; two more fill the queue, a third is refused at once
        with ThreadPoolExecutor(2) as pool:
            waiting = pool.submit(c.post, "/score", json={"items": [item, item]})
            deadline = time.monotonic() + 5
            while c.get("/health").json()["queued"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            full = c.post("/score", json=item)
            assert full.status_code == 503 and full.json()["field"] == "queue"
            fake.gate.set()
            assert waiting.result().status_code in (200, 504)
        answer = c.post("/score", json={"items": [{**item, "prompt": "abc"}, {**item, "prompt": "a"}]})
        assert answer.status_code == 200 and [r["score"] for r in answer.json()["results"]] == [3.0, 1.0]


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_bad_start_up_input_is_one_line(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert cli(["serve", str(tmp_path / "nowhere"), "--port", "0"]) == 1
    assert cli(["serve", str(tmp_path), "--port", "0"]) == 1  # a folder, but no run
    assert cli(["serve", str(run), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert cli(["serve", str(run), "--port", "0", "--root", str(tmp_path / "gone")]) == 1
    taken = bind("127.0.0.1", 0)
    try:
        assert cli(["serve", str(run), "--port", str(taken.getsockname()[1])]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("error: ") for line in lines) and "Traceback" not in err
    assert "no such run" in lines[0] and "EPAIQA_API_KEY" in lines[2] and "in use" in lines[4]
    with pytest.raises(SystemExit) as bad:
        cli(["serve", str(run), "--max-batch", "0"])
    assert bad.value.code == 2
