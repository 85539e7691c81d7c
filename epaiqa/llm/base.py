"""What every LMM client shares: the :class:`Reply` it answers, the :class:`Client` protocol, :class:`LLMError`.

Errors reach the user as one :class:`LLMError` line that names the client and the endpoint, never the key
(:func:`redact`). The clients: :class:`~epaiqa.llm.api.APIClient` and :class:`~epaiqa.llm.local.LocalClient`; the
factory that picks one by name: :func:`~epaiqa.llm.client.make_client`.
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
