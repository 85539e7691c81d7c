"""How clients are made from a name: :func:`make_client`.

A client turns a :class:`~epaiqa.llm.prompt.Prompt` into a :class:`~epaiqa.llm.base.Reply` (its text and the
tokens it took, where the API reports them): :class:`~epaiqa.llm.api.APIClient` for the API providers and
OpenAI-compatible servers, :class:`~epaiqa.llm.local.LocalClient` for ``local/...``.
"""

from __future__ import annotations

from epaiqa.llm.api import APIClient
from epaiqa.llm.base import Client
from epaiqa.llm.local import LocalClient
from epaiqa.llm.settings import ClientSettings


def make_client(settings: ClientSettings) -> Client:
    """The client for ``settings`` (a local model is loaded once per process and shared by its clients)."""
    if settings.provider == "local":
        return LocalClient(settings)
    return APIClient(settings)
