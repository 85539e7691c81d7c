"""The cross-model CoT data engine (§4.3, Fig. 9) against a loopback server, and offline with a local model."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback import Loopback, user_text

from epaiqa.cli import main
from epaiqa.cot_engine import (
    CACHE,
    PROVENANCE,
    clean_piece,
    draw_annotator,
    parse_approval,
    run_cot_engine,
    sections_of,
)
from epaiqa.data.manifest import load_manifest
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError
from epaiqa.llm.settings import resolve_client

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-cot-FAKE-KEY-1234567890"
CLIENTS = ["openai/A", "openai/B", "openai/C"]


@pytest.mark.parametrize(
    ("text", "approve"),
    [
        ('{"approve": true, "reason": "fine"}', True),
        ('Verdict:\n```json\n{"approve": false, "reason": "wrong colour"}\n```', False),
        ('{"Approve": "yes"}', True),
        ("Approve. The explanation matches.", True),
        ("No, it contradicts the image.", False),
        ("Looks fine to me I guess", None),
        ('{"approve": "maybe"}', None),
        ("", None),
    ],
)
def test_scrutiny_verdicts(text: str, approve: bool | None) -> None:
    assert parse_approval(text) is approve


def test_pieces_are_cleaned_and_annotators_drawn_per_sample() -> None:
    assert clean_piece('```\n"The cat is\n  red."\n```') == "The cat is red."
    ids = [f"{i:06d}" for i in range(60)]
    draws = [draw_annotator(i, 0, 3) for i in ids]
    assert draws == [draw_annotator(i, 0, 3) for i in reversed(ids)][::-1]  # order plays no part
    assert set(draws) == {0, 1, 2} and draws != [draw_annotator(i, 1, 3) for i in ids]


def section_of(text: str) -> str:
    if "Another model was told" in text:  # a scrutiny: the claim names the dimension
        return "naturalness" if "naturalness of the edited area is" in text else (
            "harmony" if "harmony between" in text else "completion")  # fmt: skip
    return "naturalness" if "why the naturalness" in text else "harmony" if "why the harmony" in text else "completion"


def script(body: dict, n: int) -> tuple:
    """A writes/approves everything; B answers no verdict on harmony; C rejects every naturalness piece."""
    text, model = user_text(body), body["model"]
    section = section_of(text)
    if "Another model was told" not in text:
        return ("ok", f'"{model} explains the {section}\nof this edit."')
    if model == "C" and section == "naturalness":
        return ("ok", '{"approve": false, "reason": "the crop shows no such artefact"}')
    if model == "B" and section == "harmony":
        return ("ok", "Looks fine to me I guess")
    return ("ok", 'Verdict: {"approve": true, "reason": "consistent"}')


def training(root: Path) -> list:
    samples = load_manifest(root)
    by_id = {s.id: s for s in samples}
    return [by_id[i] for i in load_splits(root, samples)["overall"]["train"]]


def test_a_piece_is_kept_only_when_both_scrutinisers_approve(
    demo_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from epaiqa.data.schema import has_explain_cot
    from epaiqa.lmm.instructions import explain_answer

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    before = (demo_copy / "manifest.jsonl").read_text()
    old = {s.id: s for s in load_manifest(demo_copy)}
    chosen = training(demo_copy)[:10]
    assert {len(sections_of(s)) for s in chosen} == {1, 3}  # both scenarios
    with Loopback(script) as server:
        argv = ["cot", str(demo_copy), "--annotators", ",".join(CLIENTS), "--base-url", server.url, "--overwrite",
                "--limit", "10", "--no-progress"]  # fmt: skip
        assert main(argv) == 0
    pieces = sum(len(sections_of(s)) for s in chosen)
    assert len(server.requests) == 3 * pieces  # each piece: one annotation, two scrutinies
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)
    images = {section_of(user_text(r["body"])): sum(p.get("type") == "image_url" for p in r["body"]["messages"][-1]
                                                    ["content"]) for r in server.requests}  # fmt: skip
    assert images == {"completion": 2, "harmony": 2, "naturalness": 3}  # source, edited (+ the region's crop)

    after = {s.id: s for s in load_manifest(demo_copy)}
    assert (demo_copy / "manifest.jsonl.bak").read_text() == before
    provenance = [json.loads(line) for line in (demo_copy / PROVENANCE).read_text().splitlines()]
    assert len(provenance) == pieces
    for sample in chosen:
        annotator = CLIENTS[draw_annotator(sample.id, 0, 3)]
        model = annotator.split("/")[1]
        cot = after[sample.id].cot or {}
        assert cot["completion"] == f"{model} explains the completion of this edit."  # everyone approved
        if "naturalness" in sections_of(sample):
            assert ("naturalness" in cot) is (annotator == "openai/C")  # C rejects the others' naturalness
            assert ("harmony" in cot) is (annotator == "openai/B")  # B's non-verdict is no approval
            assert has_explain_cot(after[sample.id]) is False
        else:
            assert has_explain_cot(after[sample.id])
            assert f"{model} explains the completion of this edit." in explain_answer(after[sample.id])
        for line in (p for p in provenance if p["id"] == sample.id):
            assert line["annotator"] == annotator and sorted(line["scrutinisers"]) == sorted(set(CLIENTS) - {annotator})
            assert line["kept"] == all(v["approve"] is True for v in line["verdicts"]) and line["raw"].startswith('"')
    assert all(after[s.id].cot == old[s.id].cot for s in training(demo_copy)[10:])  # beyond --limit: untouched
    printed = capsys.readouterr().out
    assert "10 samples annotated" in printed and "scrutiny replies that were no verdict" in printed
    for path in demo_copy.glob("*.jsonl*"):
        assert KEY not in path.read_text()


def test_a_killed_cot_run_resumes_without_asking_twice(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = training(demo_copy)[:4]
    total = sum(3 * len(sections_of(s)) for s in chosen)
    answered = 5
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    argv = ["cot", str(demo_copy), "--annotators", ",".join(CLIENTS), "--concurrency", "1", "--overwrite",
            "--limit", "4", "--no-progress"]  # fmt: skip
    approve = ("ok", '{"approve": true}')
    with Loopback(lambda body, n: ("hang",) if n > answered else approve) as server:
        job = subprocess.Popen([sys.executable, "-m", "epaiqa.cli", *argv, "--base-url", server.url], cwd=REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while len(server.requests) <= answered and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        job.kill()
        job.wait()
    assert server.answered == answered and not (demo_copy / PROVENANCE).exists()
    assert len((demo_copy / CACHE).read_text().splitlines()) == answered

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with Loopback(lambda body, n: approve) as again:
        assert main([*argv, "--base-url", again.url]) == 0
    assert again.answered == total - answered  # nothing answered before is asked again
    assert len((demo_copy / PROVENANCE).read_text().splitlines()) == sum(len(sections_of(s)) for s in chosen)


def test_the_test_split_gets_standard_answers_marked_as_such(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = load_manifest(demo_copy)
    by_id = {s.id: s for s in samples}
    test = [by_id[i] for i in load_splits(demo_copy, samples)["overall"]["test"]][:3]
    before = {s.id: s.cot for s in training(demo_copy)}
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    argv = ["cot", str(demo_copy), "--annotators", ",".join(CLIENTS), "--overwrite", "--limit", "3", "--no-progress"]
    with Loopback(script) as server:
        assert main([*argv, "--split", "test", "--base-url", server.url]) == 0
    after = {s.id: s for s in load_manifest(demo_copy)}
    for sample in test:
        model = CLIENTS[draw_annotator(sample.id, 0, 3)].split("/")[1]
        assert after[sample.id].cot["completion"] == f"{model} explains the completion of this edit."
    provenance = [json.loads(line) for line in (demo_copy / PROVENANCE).read_text().splitlines()]
    assert {p["id"] for p in provenance} == {s.id for s in test}
    assert all(p["split"] == "test" and p["role"].startswith("standard answer") for p in provenance)
    assert all(after[i].cot == cot for i, cot in before.items())  # the training split untouched
    with pytest.raises(ConfigError, match="not 'val'"):
        run_cot_engine(demo_copy, [resolve_client(c) for c in CLIENTS], split="val")


def test_cot_runs_offline_with_a_local_model(demo_copy: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["cot", str(demo_copy), "--annotators", "local/tiny,local/tiny,local/tiny", "--max-tokens", "6",
            "--limit", "2", "--overwrite"]  # fmt: skip
    assert main(argv) == 0
    provenance = [json.loads(line) for line in (demo_copy / PROVENANCE).read_text().splitlines()]
    chosen = training(demo_copy)[:2]
    assert len(provenance) == sum(len(sections_of(s)) for s in chosen)
    # a random tiny model approves nothing: no piece is kept, and its sections are gone from the manifest
    assert not any(p["kept"] for p in provenance)
    after = {s.id: s for s in load_manifest(demo_copy)}
    assert all(not (after[s.id].cot or {}).get("completion") for s in chosen)
    assert "kept (approved by every scrutiniser): completion 0/" in capsys.readouterr().out


def test_cot_errors_are_one_line(demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cot", str(demo_copy), "--annotators", "openai/A"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["cot", str(demo_copy), "--annotators", "openai/o3-mini,openai/A", "--base-url", "http://h/v1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "vision: false" in err and "\n" not in err
    assert main(["cot", str(tmp_path / "nowhere"), "--annotators", "local/tiny,local/tiny"]) == 1
    assert "nowhere" in capsys.readouterr().err
