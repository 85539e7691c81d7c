"""What every LMM client answers, and how clients are made from a name.

A client turns a :class:`~epaiqa.llm.prompt.Prompt` into a :class:`Reply` (its text and the tokens it took, where the
API reports them). :func:`make_client` builds the right one: :class:`~epaiqa.llm.api.APIClient` for the API
providers and OpenAI-compatible servers, :class:`~epaiqa.llm.local.LocalClient` for ``local/...``. Errors reach the
user as one :class:`LLMError` line that names the client and the endpoint, never the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from epaiqa.errors import EPAIQAError
from epaiqa.llm.prompt import Prompt
from epaiqa.llm.settings import ClientSettings


class LLMError(EPAIQAError):
    """A request that cannot succeed: missing key, refused key, unreachable server, reply that is no reply."""


@dataclass
class Reply:
    """A model's answer: its text, tokens in and out (None where not reported), and how it was obtained."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    cached: bool = False


class Client(Protocol):
    """A model that answers prompts; ``seed`` fixes a local model's sampling (APIs sample on their side)."""

    settings: ClientSettings

    def ask(self, prompt: Prompt, seed: int = 0) -> Reply:
        """The model's reply to one prompt (retries are the client's business)."""
        ...


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (a key) replaced by ``***``."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def make_client(settings: ClientSettings) -> Client:
    """The client for ``settings`` (a local model is loaded once per process and shared by its clients)."""
    if settings.provider == "local":
        from epaiqa.llm.local import LocalClient

        return LocalClient(settings)
    from epaiqa.llm.api import APIClient

    return APIClient(settings)
