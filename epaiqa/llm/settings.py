"""Which large multimodal model a client talks to, and how: one string names it, ``conf/llm/`` holds its settings.

A client is ``provider/model``:

- ``openai/gpt-4o``, ``openai/o3-mini``: OpenAI's API (key in ``OPENAI_API_KEY``);
- ``openai/<model>`` with ``base_url``: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, a hosted endpoint);
  its key, if it wants one, in ``OPENAI_API_KEY`` or the variable ``api_key_env`` names;
- ``gemini/gemini-1.5-pro``: Google's OpenAI-compatible endpoint (key in ``GEMINI_API_KEY``);
- ``anthropic/claude-3-7-sonnet-20250219``: Anthropic's OpenAI SDK compatibility layer (key in
  ``ANTHROPIC_API_KEY``);
- ``local/<backbone or path>``: a Hugging Face model run in this process (``local/mini``, ``local/tiny``, a saved
  model folder), offline.

Settings are :data:`DEFAULTS` (= ``conf/llm/default.yaml``), then the ``conf/llm/*.yaml`` file whose ``client`` is
the string (or whose name is given instead of a client string), then what the command line sets. Keys are read
from environment variables only, when a request is made; they are never stored in settings.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from epaiqa.errors import ConfigError

#: provider → (OpenAI-compatible base URL, environment variable of its key); None: the SDK's api.openai.com
PROVIDERS: dict[str, tuple[str | None, str | None]] = {
    "openai": (None, "OPENAI_API_KEY"),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
    "anthropic": ("https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY"),
    "local": (None, None),
}
#: what an OpenAI-compatible server without authentication is sent as its key (vLLM's documented placeholder)
NO_KEY = "EMPTY"
#: where the per-client settings live in a source checkout
CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "llm"
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs but its key.

    ``temperature`` None leaves the provider's default (1.0 at OpenAI; the local client samples at 1.0 too), so
    that the judge's five repetitions can differ. ``max_tokens_field``: OpenAI's reasoning models (o1, o3-mini) take
    ``max_completion_tokens``. Retries: 429 (after its Retry-After), 408, 409, 5xx, timeouts and dropped
    connections are retried ``max_retries`` times with exponential backoff from ``backoff_s`` (capped at
    ``max_backoff_s``, with jitter); other errors stop the run at once. ``concurrency`` requests run at a time;
    ``requests_per_minute`` / ``tokens_per_minute`` pace them. Prices (USD per million tokens) are yours to set:
    the APIs report tokens, not cost.
    """

    client: str
    base_url: str | None = None
    api_key_env: str | None = None
    vision: bool = True
    temperature: float | None = None
    max_tokens: int = 512
    max_tokens_field: str = "max_tokens"
    reasoning_effort: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    concurrency: int = 4
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    @property
    def provider(self) -> str:
        """The part before the first slash: openai, gemini, anthropic or local."""
        return self.client.split("/", 1)[0]

    @property
    def model(self) -> str:
        """The model name the provider knows (or the local backbone / path)."""
        return self.client.split("/", 1)[1]

    @property
    def endpoint(self) -> str:
        """Where requests go, for messages: the base URL, the provider's default, or "in-process"."""
        if self.provider == "local":
            return "in-process"
        return self.base_url or PROVIDERS[self.provider][0] or "https://api.openai.com/v1"

    def key_variable(self) -> str | None:
        """The environment variable the key is read from (None: no key needed)."""
        if self.api_key_env:
            return self.api_key_env
        return PROVIDERS[self.provider][1]

    def api_key(self) -> str:
        """The key from the environment; a missing one is a :class:`ConfigError` naming its variable.

        An ``openai/`` client with a ``base_url`` of its own may run without a key (a local vLLM / SGLang /
        llama.cpp server): it sends :data:`NO_KEY` unless ``OPENAI_API_KEY`` (or ``api_key_env``) is set.
        """
        variable = self.key_variable()
        if variable is None:
            return NO_KEY
        key = os.environ.get(variable, "").strip()
        if key:
            return key
        if self.provider == "openai" and self.base_url and not self.api_key_env:
            return NO_KEY
        raise ConfigError(
            f"{variable} is not set: the client {self.client} ({self.endpoint}) needs an API key "
            f"(export {variable}=...)"
        )


#: the defaults every client starts from (conf/llm/default.yaml holds the same; a test keeps them equal)
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ClientSettings) if f.name != "client"}


def check_client(name: str) -> str:
    """``name`` if it is ``provider/model`` with a known provider, else a :class:`ConfigError`."""
    provider, _, model = name.partition("/")
    if not model or provider not in PROVIDERS:
        raise ConfigError(
            f"client {name!r} must be provider/model with provider one of {', '.join(PROVIDERS)} "
            "(e.g. openai/gpt-4o, anthropic/claude-3-7-sonnet-20250219, gemini/gemini-1.5-pro, local/mini)"
        )
    return name


def _read_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # omegaconf raises several of its own
        raise ConfigError(f"{path}: not a readable settings file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of client settings")
    return data


def conf_files(conf_dir: Path = CONF_DIR) -> dict[str, dict[str, Any]]:
    """The ``conf/llm/*.yaml`` files by name (none outside a source checkout)."""
    if not conf_dir.is_dir():
        return {}
    return {p.stem: _read_yaml(p) for p in sorted(conf_dir.glob("*.yaml"))}


def _checked(values: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in fields(ClientSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown client settings {unknown}; known: {sorted(known)}")
    if values.get("max_tokens_field", "max_tokens") not in MAX_TOKENS_FIELDS:
        raise ConfigError(f"{where}: max_tokens_field must be one of {', '.join(MAX_TOKENS_FIELDS)}")
    for key in ("concurrency", "max_tokens"):
        if key in values and (not isinstance(values[key], int) or values[key] < 1):
            raise ConfigError(f"{where}: {key} must be a whole number of at least 1, got {values[key]!r}")
    if "max_retries" in values and (not isinstance(values["max_retries"], int) or values["max_retries"] < 0):
        raise ConfigError(f"{where}: max_retries must be a whole number of at least 0, got {values['max_retries']!r}")
    return values


def resolve_client(name: str, conf_dir: Path = CONF_DIR, **overrides: Any) -> ClientSettings:
    """The settings of a client string (or of a ``conf/llm`` file name), with ``overrides`` (None ones skipped).

    ``resolve_client("openai/gpt-4o")`` takes ``conf/llm/gpt_4o.yaml`` (its ``client`` matches);
    ``resolve_client("o3_mini")`` takes that file by name; an unknown ``provider/model`` gets the defaults.
    """
    files = conf_files(conf_dir)
    base = _checked(dict(files.get("default", {})), str(conf_dir / "default.yaml"))
    if "/" not in name and name in files and name != "default":
        own = files[name]
        where = str(conf_dir / f"{name}.yaml")
    else:
        check_client(name)
        match = [n for n, data in files.items() if data.get("client") == name]
        own = files[match[0]] if match else {"client": name}
        where = str(conf_dir / f"{match[0]}.yaml") if match else name
    values = {**DEFAULTS, **base, **_checked(dict(own), where)}
    values.update(_checked({k: v for k, v in overrides.items() if v is not None}, "command line"))
    if "client" not in values:
        raise ConfigError(f"{where}: names no client (client: provider/model)")
    check_client(values["client"])
    return ClientSettings(**values)


def public(settings: ClientSettings) -> dict[str, Any]:
    """The settings as plain data for output files (no key is ever part of them)."""
    return asdict(settings)


def with_overrides(settings: ClientSettings, **changes: Any) -> ClientSettings:
    """A copy with some settings changed (None values ignored)."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})
