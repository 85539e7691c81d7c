"""Errors that reach users as one clear message, never a traceback."""

from __future__ import annotations


class EPAIQAError(Exception):
    """Base class for errors the CLI and run.py print as plain messages."""


class DataError(EPAIQAError):
    """A dataset root, manifest, image or ratings file is invalid.

    ``problems`` holds one ``file:line: field: message`` string per problem found.
    """

    def __init__(self, summary: str, problems: list[str] | None = None) -> None:
        self.summary = summary
        self.problems = list(problems or [])
        super().__init__(self.format())

    def format(self, limit: int = 50) -> str:
        """The summary followed by at most ``limit`` problem lines."""
        lines = [self.summary, *self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more problems")
        return "\n".join(lines)


class ConfigError(EPAIQAError):
    """A configuration value is missing or out of its allowed set."""
