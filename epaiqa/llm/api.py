"""Chat completions over HTTP through the official ``openai`` SDK: OpenAI, Gemini, Anthropic, any compatible server.

The SDK's own retries are off (``max_retries=0``); this module retries with one documented rule, so that what the
loopback tests pin is what users get:

- 429, 408, 409 and 5xx wait what the server's ``retry-after-ms`` or ``Retry-After`` header (seconds or an HTTP
  date) asks, if it sends one; a server that asks for more than :data:`MAX_RETRY_AFTER_S` stops the run (it resumes
  from its cache);
- otherwise, and for timeouts, dropped connections and replies that are no chat completion, the wait is
  ``backoff_s · 2^attempt`` (at most ``max_backoff_s``, times a jitter in [0.5, 1]);
- after ``max_retries`` retries, and at once for any other status (400, 401, 403, 404, …), a one-line
  :class:`~epaiqa.llm.base.LLMError` names the client, the endpoint and the server's own message, never the key.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from epaiqa.llm.base import LLMError, Reply, redact
from epaiqa.llm.prompt import Prompt
from epaiqa.llm.settings import PROVIDERS, ClientSettings

#: statuses worth another try
RETRY_STATUSES = frozenset({408, 409, 429})
#: a Retry-After longer than this is not waited for (the run stops and resumes later from its cache)
MAX_RETRY_AFTER_S = 600.0


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a server asks to wait: ``retry-after-ms``, else ``Retry-After`` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
    except ValueError:
        pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retryable(status: int) -> bool:
    """Whether an HTTP status is worth another try."""
    return status in RETRY_STATUSES or 500 <= status < 600


def backoff(settings: ClientSettings, attempt: int, rng: random.Random) -> float:
    """Exponential backoff before retry ``attempt`` (0-based), capped, with jitter."""
    return min(settings.max_backoff_s, settings.backoff_s * 2**attempt) * rng.uniform(0.5, 1.0)


def _server_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
    text = str(message or getattr(exc, "message", "") or exc).strip()
    return (text.splitlines() or [""])[0][:200]


class APIClient:
    """A chat-completions client for one ``provider/model`` (see :mod:`epaiqa.llm.settings`)."""

    def __init__(self, settings: ClientSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        import openai

        self.settings = settings
        self._key = settings.api_key()  # a missing key fails here, before any request
        self._sleep = sleep
        self._rng = random.Random()
        base_url = settings.base_url or PROVIDERS[settings.provider][0]
        self._sdk = openai.OpenAI(
            api_key=self._key, base_url=base_url, max_retries=0, timeout=settings.timeout_s
        )  # SDK retries off: ours are the documented ones

    def _error(self, message: str) -> LLMError:
        return LLMError(redact(f"{self.settings.client} at {self.settings.endpoint}: {message}", self._key))

    def _params(self, prompt: Prompt) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {"model": s.model, "messages": prompt.openai_messages()}
        params[s.max_tokens_field] = s.max_tokens
        if s.temperature is not None:
            params["temperature"] = s.temperature
        if s.reasoning_effort:
            params["reasoning_effort"] = s.reasoning_effort
        return params

    def _status_error(self, exc: Any) -> LLMError:
        status, said = exc.status_code, _server_message(exc)
        if status in (401, 403):
            variable = self.settings.key_variable() or "the key variable"
            return self._error(f"the key in {variable} was refused (HTTP {status}: {said})")
        if status == 404:
            return self._error(f"no model {self.settings.model!r} here (HTTP 404: {said})")
        return self._error(f"request rejected (HTTP {status}: {said})")

    def ask(self, prompt: Prompt, seed: int = 0) -> Reply:
        """One chat completion, retried as the module says; its text and token counts."""
        import openai

        if prompt.images and not self.settings.vision:
            raise self._error("this client is set up without images (vision: false) but the prompt has images")
        params, retries = self._params(prompt), self.settings.max_retries
        last = ""
        for attempt in range(retries + 1):
            wait: float | None = None
            try:
                response = self._sdk.chat.completions.create(**params)
            except openai.APIStatusError as exc:
                if not retryable(exc.status_code):
                    raise self._status_error(exc) from None
                last = f"HTTP {exc.status_code}: {_server_message(exc)}"
                wait = retry_after(exc.response.headers)
                if wait is not None and wait > MAX_RETRY_AFTER_S:
                    raise self._error(f"the server asks to wait {wait:.0f} s ({last}); rerun later to resume") from None
            except openai.APITimeoutError:
                last = f"no reply within {self.settings.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc.__context__
                last = f"connection failed ({type(cause).__name__ if cause else 'closed'}: {cause or exc})"
            except (openai.APIResponseValidationError, ValueError) as exc:  # ValueError: a body that is no JSON
                last = f"malformed reply ({type(exc).__name__}: {str(exc)[:120]})"
            else:
                reply = self._reply(response, attempt + 1)
                if reply is not None:
                    return reply
                last = "malformed reply (no choices[0].message.content)"
            if attempt < retries:
                self._sleep(backoff(self.settings, attempt, self._rng) if wait is None else wait)
        tries = f"{retries + 1} attempt{'s' if retries else ''}"
        if last.startswith("connection failed"):
            raise self._error(f"cannot reach the server after {tries}: {last}; is it running?")
        raise self._error(f"gave up after {tries}: {last}")

    @staticmethod
    def _reply(response: Any, attempts: int) -> Reply | None:
        """The reply's text and usage, or None when the response is no chat completion."""
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        if not isinstance(text, str):
            return None
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None) if usage is not None else None
        completion_tokens = getattr(usage, "completion_tokens", None) if usage is not None else None
        return Reply(text, prompt_tokens, completion_tokens, attempts)
