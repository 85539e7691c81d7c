"""The explanation judge (appendix F): its rules on hand-made cases, and whole runs against a loopback server."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import make_cfg
from loopback import Loopback, free_url, user_text

from epaiqa.cli import main
from epaiqa.data.manifest import load_manifest
from epaiqa.judge.rules import final_scores, judge_type, parse_verdict, vote, voted_scores

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-judge-FAKE-KEY-987654321"


# --- the rules -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "naturalness", "harmony", "overall", "kind"),
    [
        (1, 4.5, 4.5, 4.5, 1),  # not followed: Type 1 whatever the rest
        (2, None, None, None, 1),
        (3, 2.9, 4.0, 2.5, 2),  # followed, naturalness < 3, overall < 3
        (3, 4.0, 1.0, 1.0, 2),
        (3, 3.5, 3.2, 4.1, 3),  # followed, both > 3, overall > 3
        (3, 2.0, 4.0, 3.5, None),  # a low dimension but overall not < 3
        (3, 3.0, 4.0, 4.0, None),  # exactly 3 is neither < 3 nor > 3
        (3, 4.0, 4.0, 3.0, None),
        (3, None, 4.0, 4.0, None),
        (None, 4.0, 4.0, 4.0, None),
    ],
)
def test_judge_types_follow_appendix_f(completion, naturalness, harmony, overall, kind) -> None:
    assert judge_type(completion, naturalness, harmony, overall) == kind


@pytest.mark.parametrize(
    ("scores", "voted"),
    [
        ([2, 2, 1, 1, 0], 2),  # 2/2/1: the highest score that appears twice
        ([1, 1, 0, 0, 2], 1),
        ([0, 0, 2, 2, 1], 2),
        ([0, 0, 0, 2, 2], 0),  # a majority wins even over higher scores
        ([1, 1, 1, 1, 1], 1),
        ([0, 2, 1], 2),  # with parse failures: ties still go to the highest
        ([0], 0),
        ([], None),
    ],
)
def test_vote_rule(scores: list[int], voted: int | None) -> None:
    assert vote(scores) == voted


FULL = '{"PA": 2, "LNA": 1, "GHA": 0, "Overall": 2}'


@pytest.mark.parametrize(
    ("text", "kind", "parsed"),
    [
        (FULL, 2, {"PA": 2, "LNA": 1, "GHA": 0, "Overall": 2}),
        (
            f"Here is my grading.\n```json\n{FULL}\n```\nThe response is close.",
            3,
            {"PA": 2, "LNA": 1, "GHA": 0, "Overall": 2},
        ),
        ('{"pa": "1", "lna": 2, "gha": 2.0, "overall": 0}', 2, {"PA": 1, "LNA": 2, "GHA": 2, "Overall": 0}),
        ('{"PA": 0, "LNA": null, "GHA": null, "Overall": 1}', 1, {"PA": 0, "Overall": 1}),
        ('{"PA": 0, "LNA": 7, "Overall": 1}', 1, {"PA": 0, "Overall": 1}),  # Type 1: LNA/GHA ignored
        ('{"PA": 0, "LNA": null, "GHA": null, "Overall": 1}', 2, None),  # Types 2/3 need them
        ('{"PA": 3, "LNA": 1, "GHA": 1, "Overall": 1}', 2, None),
        ('{"PA": true, "LNA": 1, "GHA": 1, "Overall": 1}', 2, None),
        ('{"PA": 2, "LNA": 1, "GHA": 1}', 2, None),
        ("{PA: 2, LNA: 1, GHA: 1, Overall: 2}", 2, None),
        ("PA 2, LNA 1, GHA 1, Overall 2", 2, None),
        (
            '{"note": "thinking"} then {"PA": 1, "LNA": 1, "GHA": 1, "Overall": 1}',
            2,
            {"PA": 1, "LNA": 1, "GHA": 1, "Overall": 1},
        ),
        ("", 1, None),
    ],
)
def test_verdict_parsing(text: str, kind: int, parsed: dict | None) -> None:
    assert parse_verdict(text, kind) == parsed


def test_votes_and_normalisation_on_hand_made_samples() -> None:
    a = {"PA": 2, "LNA": 2, "GHA": 1, "Overall": 2}
    b = {"PA": 1, "LNA": 0, "GHA": 1, "Overall": 1}
    followed = voted_scores([a, a, b, b, None], kind=2)
    assert followed == {"PA": 2, "LNA": 2, "GHA": 1, "Overall": 2}
    first = voted_scores([{"PA": 0, "Overall": 1}] * 3 + [None, None], kind=1)
    assert first == {"PA": 0, "Overall": 1}
    empty = voted_scores([None] * 5, kind=3)
    scores, n = final_scores([followed, first, empty])
    # PA (2 + 0) / 2 samples / 2 = 0.5; LNA only the followed sample: 2 / 2 = 1.0; GHA 1 / 2; Overall (2 + 1) / 2 / 2
    assert scores == {"PA": 0.5, "LNA": 1.0, "GHA": 0.5, "Overall": 0.75}
    assert n == {"PA": 2, "LNA": 1, "GHA": 1, "Overall": 2}


# --- whole runs --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zeroshot_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny backbone's stage-3 answers without training (experiment=explain_zeroshot): a run to judge."""
    from epaiqa.train import train

    out = tmp_path_factory.mktemp("explain_zeroshot")
    overrides = ["experiment=explain_zeroshot", "data.limit_test=8", "model.max_new_tokens=8"]
    records = train(make_cfg(demo_root, out, overrides))
    assert records["overall"].model == "zeroshot_explain_tiny" and records["overall"].kind == "zero-shot"
    return out


@pytest.fixture
def run(zeroshot_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(zeroshot_run, tmp_path / "run"))


def types_of(run: Path, root: Path) -> Counter:
    by_id = {s.id: s for s in load_manifest(root)}
    ids = [json.loads(line)["id"] for line in (run / "explanations.jsonl").read_text().splitlines()]
    dimensions = ("completion", "naturalness", "harmony", "overall")
    return Counter(judge_type(*(by_id[i].score(d) for d in dimensions)) for i in ids)


def verdict(pa, lna, gha, overall) -> str:
    return json.dumps({"PA": pa, "LNA": lna, "GHA": gha, "Overall": overall})


#: five scripted replies per prompt: for samples whose prompt is followed (Types 2/3) and for Type 1
FOLLOWED = [verdict(1, 2, 0, 2), f"Sure.\n```json\n{verdict(1, 2, 0, 2)}\n```", "{PA: 1, LNA: 2}", verdict(2, 1, 1, 0),
            verdict(2, 1, 1, 0)]  # fmt: skip
NOT_FOLLOWED = [verdict(0, None, None, 1), verdict(0, None, None, 1), "I think it is fine.", verdict(3, 0, 0, 1),
                verdict(2, 2, 2, 1)]  # fmt: skip


def scripted() -> callable:
    seen: Counter = Counter()
    lock = threading.Lock()

    def script(body: dict, n: int) -> tuple:
        text = user_text(body)
        with lock:
            k = seen[text] % 5
            seen[text] += 1
        replies = FOLLOWED if "Score all four criteria" in text else NOT_FOLLOWED
        return ("ok", replies[k], {"prompt_tokens": 900, "completion_tokens": 30})

    return script


def test_judge_against_a_server_votes_counts_failures_and_writes_table4(
    run: Path, demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    types = types_of(run, demo_root)
    first, followed = types[1], types[2] + types[3]
    assert first and followed  # the demo test split has both scenarios
    with Loopback(scripted()) as server:
        rc = main(["judge", str(run), "--judge-model", "openai/scripted", "--base-url", server.url, "--no-progress"])
    assert rc == 0
    assert len(server.requests) == 5 * (first + followed)
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)

    judged = json.loads((run / "judge.json").read_text())
    # votes: followed PA [1,1,2,2] → 2, LNA [2,2,1,1] → 2, GHA [0,0,1,1] → 1, Overall [2,2,0,0] → 2;
    # Type 1 PA [0,0,2] → 0, Overall [1,1,1] → 1; scores = mean / 2
    assert judged["PA"] == pytest.approx(2 * followed / (first + followed) / 2)
    assert judged["LNA"] == 1.0 and judged["GHA"] == 0.5
    assert judged["Overall"] == pytest.approx((first + 2 * followed) / (first + followed) / 2)
    assert judged["parse_failures"] == 2 * first + followed and judged["replies"] == 5 * (first + followed)
    n = judged["n"]
    assert (n["PA"], n["LNA"], n["type1"], n["type2"], n["type3"]) == (first + followed, followed, first, types[2],
                                                                        types[3])  # fmt: skip
    assert n["left_out"] == types[None] and n["unjudged"] == 0
    assert judged["model"] == "zeroshot_explain_tiny" and judged["judge"] == "openai/scripted"
    assert judged["usage"]["prompt_tokens"] == 900 * judged["replies"]

    lines = [json.loads(line) for line in (run / "judge_verdicts.jsonl").read_text().splitlines()]
    assert len(lines) == first + followed
    for line in lines:
        assert len(line["replies"]) == 5 and Counter(line["replies"]) == Counter(NOT_FOLLOWED if line["type"] == 1
                                                                                  else FOLLOWED)  # fmt: skip
        assert line["verdicts"].count(None) == (2 if line["type"] == 1 else 1)
    printed = capsys.readouterr().out
    assert "parse failures" in printed and "zeroshot_explain_tiny judged by openai/scripted" in printed

    for path in run.rglob("*"):  # the key is in no output, cache or log
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path

    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table4.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| zeroshot_explain_tiny"))
    assert "openai/scripted" in row and f"{judged['GHA']:.3f}" in row and f"{judged['PA']:.3f}" in row
    assert "LNA" in table and (tmp_path / "report" / "table4.csv").is_file()


def test_judge_errors_are_one_line(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def error_of(*argv: str) -> str:
        assert main(list(argv)) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        return err

    assert "no explanations.jsonl" in error_of("judge", str(tmp_path), "--judge-model", "openai/x", "--base-url", "h")
    assert "provider/model" in error_of("judge", str(run), "--judge-model", "gpt4")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert "OPENAI_API_KEY is not set" in error_of("judge", str(run), "--judge-model", "openai/gpt-4o")
    url = free_url()
    err = error_of("judge", str(run), "--judge-model", "openai/x", "--base-url", url, "--max-retries", "0")
    assert url in err and "cannot reach" in err
    (run / "explanations.jsonl").write_text('{"id": "1"}\n')
    assert "explanations.jsonl:1: missing explanation" in error_of("judge", str(run), "--judge-model", "local/tiny")


def test_a_killed_judge_resumes_without_asking_twice(
    run: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    types = types_of(run, demo_root)
    total = 5 * (types[1] + types[2] + types[3])
    answered = 7
    argv = [sys.executable, "-m", "epaiqa.cli", "judge", str(run), "--judge-model", "openai/scripted",
            "--concurrency", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    with Loopback(lambda body, n: ("hang",) if n > answered else ("ok", verdict(2, 2, 2, 2))) as server:
        job = subprocess.Popen([*argv, "--base-url", server.url], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 60
        while len(server.requests) <= answered and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        job.kill()
        job.wait()
    assert server.answered == answered and not (run / "judge.json").exists()

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with Loopback(lambda body, n: ("ok", verdict(2, 2, 2, 2))) as again:
        assert main([*argv[3:], "--base-url", again.url]) == 0
    assert again.answered == total - answered  # nothing answered before is asked again
    assert f"{total - answered} requests, {answered} from the cache" in capsys.readouterr().out
    judged = json.loads((run / "judge.json").read_text())
    assert judged["PA"] == judged["Overall"] == 1.0 and judged["parse_failures"] == 0
    assert len((run / "judge_cache.jsonl").read_text().splitlines()) == total


def test_judge_runs_offline_with_a_local_model_and_reports_its_failures(run: Path) -> None:
    assert main(["judge", str(run), "--judge-model", "local/tiny", "--max-tokens", "8", "--repetitions", "2",
                 "--limit", "3"]) == 0  # fmt: skip
    judged = json.loads((run / "judge.json").read_text())
    assert judged["judge"] == "local/tiny" and judged["replies"] == 6
    # a random tiny model writes no JSON: every reply is a parse failure, and the scores say so instead of guessing
    assert judged["parse_failures"] == 6 and judged["parse_failure_rate"] == 1.0
    assert judged["PA"] is None and judged["n"]["unjudged"] == 3
    assert judged["usage"]["completion_tokens"] > 0


def test_appendix_f_quotas_draw_that_many_samples_of_each_type(capsys: pytest.CaptureFixture) -> None:
    from epaiqa.judge.run import APPENDIX_F_QUOTAS, Explained, take_quotas

    samples = [Explained(f"{i:03d}", 1 + i % 3, None, "p", "ref", "resp") for i in range(30)]  # 10 of each type
    chosen = take_quotas(samples, (4, 0, 20))
    assert [sum(s.kind == k for s in chosen) for k in (1, 2, 3)] == [4, 0, 10]  # a type with fewer: all of it
    assert [s.id for s in chosen] == sorted(s.id for s in chosen)
    assert take_quotas(samples, (4, 0, 20)) == chosen  # seeded: the same draw every time
    assert {s.id for s in take_quotas(samples, (4, 0, 0))} != {s.id for s in samples if s.kind == 1}
    assert APPENDIX_F_QUOTAS == (106, 88, 106) and sum(APPENDIX_F_QUOTAS) == 300
    assert main(["judge", "/nonexistent", "--judge-model", "openai/x", "--per-type", "1,2"]) != 0
    assert "--per-type: appendix-f or three counts" in capsys.readouterr().err
