"""The LMM client layer against a real loopback HTTP server: retries, errors, keys, cache, pacing, local model."""

import threading
import time
from pathlib import Path

import pytest
from loopback import Loopback, free_url, user_text
from omegaconf import OmegaConf
from PIL import Image

from epaiqa.errors import ConfigError
from epaiqa.llm.api import APIClient, retry_after
from epaiqa.llm.base import LLMError
from epaiqa.llm.batch import Job, Usage, ask_all
from epaiqa.llm.cache import ReplyCache
from epaiqa.llm.limits import Pacer
from epaiqa.llm.prompt import ImagePart, Prompt
from epaiqa.llm.settings import CONF_DIR, DEFAULTS, resolve_client

KEY = "sk-loopback-SECRET-0123456789"
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def client(url: str, **settings) -> APIClient:
    return APIClient(resolve_client("openai/scripted", base_url=url, **{**FAST, **settings}))


HELLO = Prompt(("Say hello.",))


def test_settings_come_from_conf_llm_by_client_string_or_file_name() -> None:
    assert OmegaConf.to_container(OmegaConf.load(CONF_DIR / "default.yaml")) == DEFAULTS
    judge = resolve_client("openai/o3-mini")
    assert judge == resolve_client("o3_mini")
    assert judge.max_tokens_field == "max_completion_tokens" and judge.vision is False
    assert resolve_client("anthropic/claude-3-7-sonnet-20250219").endpoint == "https://api.anthropic.com/v1/"
    assert resolve_client("gemini/gemini-1.5-pro").key_variable() == "GEMINI_API_KEY"
    other = resolve_client("openai/some-model", base_url="http://h:1/v1", concurrency=2, max_tokens=None)
    assert (other.concurrency, other.max_tokens, other.endpoint) == (2, DEFAULTS["max_tokens"], "http://h:1/v1")
    for bad in ("gpt-4o", "azure/gpt-4o", "openai/"):
        with pytest.raises(ConfigError, match="provider/model"):
            resolve_client(bad)
    with pytest.raises(ConfigError, match="concurrency"):
        resolve_client("openai/x", concurrency=0)


@pytest.mark.parametrize(
    ("name", "variable"), [("openai/gpt-4o", "OPENAI_API_KEY"), ("anthropic/claude-x", "ANTHROPIC_API_KEY")]
)
def test_missing_key_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, variable: str) -> None:
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError) as info:
        APIClient(resolve_client(name))
    assert variable in str(info.value) and "\n" not in str(info.value)


def test_a_local_server_needs_no_key_unless_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with Loopback(lambda body, n: ("ok", "hi")) as server:
        assert client(server.url).ask(HELLO).text == "hi"
        assert server.requests[0]["headers"]["authorization"] == "Bearer EMPTY"
        with pytest.raises(ConfigError, match="MY_SERVER_KEY"):
            client(server.url, api_key_env="MY_SERVER_KEY")


def test_a_valid_reply_with_images_goes_over_http_with_the_key_in_the_header() -> None:
    image = ImagePart.from_image(Image.new("RGB", (40, 30), (200, 10, 10)))
    prompt = Prompt(("Source: ", image, " Edited: ", image, " Compare."), system="Be brief.")
    with Loopback(lambda body, n: ("ok", "They match.", {"prompt_tokens": 321, "completion_tokens": 4})) as server:
        reply = client(server.url, temperature=0.5, max_tokens=64).ask(prompt)
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens, reply.attempts) == ("They match.", 321, 4, 1)
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["headers"]["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "scripted" and body["temperature"] == 0.5 and body["max_tokens"] == 64
    system, user = body["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    kinds = [part["type"] for part in user["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    assert user["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_429_waits_what_retry_after_asks_then_succeeds() -> None:
    def script(body: dict, n: int) -> tuple:
        return ("status", 429, {"Retry-After": "1"}, "slow down") if n == 1 else ("ok", "done")

    with Loopback(script) as server:
        reply = client(server.url).ask(HELLO)
    first, second = server.times()
    assert reply.text == "done" and reply.attempts == 2
    assert second - first >= 0.95  # Retry-After honoured, not the 10 ms backoff


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == pytest.approx(10.0)
    assert retry_after({}) is None and retry_after({"Retry-After": "soon"}) is None


@pytest.mark.parametrize(
    "first",
    [
        ("status", 500, {}, "internal error"),
        ("status", 503, {}, "overloaded"),
        ("slow", 1.5, "too late"),
        ("drop",),
        ("raw", "this is not JSON"),
        ("raw", '{"choices": []}'),
    ],
    ids=["500", "503", "timeout", "connection-drop", "body-not-json", "no-choices"],
)
def test_transient_failures_are_retried(first: tuple) -> None:
    with Loopback(lambda body, n: first if n == 1 else ("ok", "second time")) as server:
        reply = client(server.url, timeout_s=0.5).ask(HELLO)
    assert reply.text == "second time" and reply.attempts == 2 and len(server.requests) == 2


def test_retries_give_up_with_one_line_that_says_why() -> None:
    server = Loopback(lambda body, n: ("status", 429, {"retry-after-ms": "10"}, "quota"))
    with server, pytest.raises(LLMError) as info:
        client(server.url, max_retries=2).ask(HELLO)
    assert len(server.requests) == 3
    message = str(info.value)
    assert "gave up after 3 attempts" in message and "HTTP 429" in message and server.url in message
    assert "\n" not in message


def test_a_server_asking_for_too_long_a_wait_stops_the_run() -> None:
    server = Loopback(lambda body, n: ("status", 429, {"Retry-After": "3600"}, "come back later"))
    with server, pytest.raises(LLMError, match="asks to wait 3600 s"):
        client(server.url).ask(HELLO)
    assert len(server.requests) == 1


def test_unreachable_server_names_the_url() -> None:
    url = free_url()
    with pytest.raises(LLMError) as info:
        client(url, max_retries=1).ask(HELLO)
    assert url in str(info.value) and "cannot reach" in str(info.value)


@pytest.mark.parametrize(("status", "words"), [(401, "OPENAI_API_KEY was refused"), (404, "no model 'scripted'")])
def test_refusals_are_not_retried_and_never_show_the_key(status: int, words: str) -> None:
    echo = f"Incorrect API key provided: {KEY}"  # servers do echo keys in their errors
    with Loopback(lambda body, n: ("status", status, {}, echo)) as server, pytest.raises(LLMError) as info:
        client(server.url).ask(HELLO)
    assert len(server.requests) == 1
    assert words in str(info.value) and KEY not in str(info.value) and "***" in str(info.value)


def test_images_to_a_text_only_client_are_refused_before_any_request() -> None:
    image = ImagePart.from_image(Image.new("RGB", (8, 8)))
    with Loopback(lambda body, n: ("ok", "x")) as server, pytest.raises(LLMError, match="vision: false"):
        client(server.url, vision=False).ask(Prompt(("Look: ", image)))
    assert not server.requests


def test_batch_runs_concurrently_caches_and_asks_nothing_twice(tmp_path: Path) -> None:
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def script(body: dict, n: int) -> tuple:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return ("ok", "re: " + user_text(body), {"prompt_tokens": 10, "completion_tokens": 2})

    jobs = [Job(f"s{i // 2}", i % 2, Prompt((f"question {i // 2}",))) for i in range(8)]
    with Loopback(script) as server:
        llm = client(server.url, concurrency=3)
        usage = Usage("openai/scripted")
        replies = ask_all(llm, jobs, ReplyCache(tmp_path / "cache.jsonl"), usage=usage, progress=False)
        assert [r.text for r in replies] == [f"re: question {i // 2}" for i in range(8)]
        assert len(server.requests) == 8 and state["most"] == 3
        assert (usage.requests, usage.cached, usage.prompt_tokens, usage.completion_tokens) == (8, 0, 80, 16)

        again = Usage("openai/scripted")
        replies = ask_all(llm, jobs, ReplyCache(tmp_path / "cache.jsonl"), usage=again, progress=False)
        assert [r.text for r in replies] == [f"re: question {i // 2}" for i in range(8)]
        assert len(server.requests) == 8 and (again.requests, again.cached) == (0, 8)
    cached = (tmp_path / "cache.jsonl").read_text()
    assert KEY not in cached and cached.count("\n") == 8


def test_cache_survives_a_line_cut_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    jobs = [Job("a", 0, HELLO), Job("b", 0, HELLO)]
    with Loopback(lambda body, n: ("ok", f"reply {n}")) as server:
        ask_all(client(server.url), jobs[:1], ReplyCache(path), progress=False)
        path.write_bytes(path.read_bytes() + b'{"key": "half a li')  # killed mid-write
        cache = ReplyCache(path)
        assert len(cache) == 1 and cache.skipped == 1
        replies = ask_all(client(server.url), jobs, cache, progress=False)
    assert [r.text for r in replies] == ["reply 1", "reply 2"] and len(server.requests) == 2
    assert len(ReplyCache(path)) == 2


def test_batch_stops_at_a_fatal_error_keeping_what_was_answered(tmp_path: Path) -> None:
    def script(body: dict, n: int) -> tuple:
        return ("status", 400, {}, "bad image") if "bad" in user_text(body) else ("ok", "fine")

    jobs = [Job("a", 0, Prompt(("good",))), Job("b", 0, Prompt(("bad",))), Job("c", 0, Prompt(("good too",)))]
    with Loopback(script) as server, pytest.raises(LLMError, match="HTTP 400: bad image"):
        ask_all(client(server.url, concurrency=1), jobs, ReplyCache(tmp_path / "c.jsonl"), progress=False)
    assert len(server.requests) == 2 and len(ReplyCache(tmp_path / "c.jsonl")) == 1


def test_pacer_spaces_requests_and_holds_tokens_to_the_minute() -> None:
    clock = {"t": 0.0}
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock["t"] += s

    pacer = Pacer(requests_per_minute=30, clock=lambda: clock["t"], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert clock["t"] == pytest.approx(4.0)  # starts at 0, 2, 4 s

    clock["t"], slept = 0.0, []
    tokens = Pacer(tokens_per_minute=100, clock=lambda: clock["t"], sleep=sleep)
    tokens.wait()
    tokens.spent(120)
    clock["t"] = 10.0
    tokens.wait()  # the minute's budget is spent: wait until the first reply leaves the window
    assert clock["t"] == pytest.approx(60.0)


def test_local_client_answers_offline_with_token_counts_and_seeded_sampling() -> None:
    from epaiqa.llm.client import make_client

    local = make_client(resolve_client("local/tiny", max_tokens=6))
    image = ImagePart.from_image(Image.new("RGB", (48, 40), (10, 200, 10)))
    prompt = Prompt(("Edited: ", image, " Is it good?"))
    first, again, other = local.ask(prompt, seed=1), local.ask(prompt, seed=1), local.ask(HELLO, seed=2)
    assert first.text == again.text and 0 < first.completion_tokens <= 6
    assert first.prompt_tokens > other.prompt_tokens > 0  # the image's tokens count
    assert make_client(resolve_client("local/tiny")).model is local.model  # loaded once per process
