"""Typed errors with a hint; cli.py alone maps them to exit codes.

Exit codes (documented in the README):
  0 ok · 1 runtime error · 2 usage, config or input error · 3 model not found or not cached ·
  4 model file rejected (corrupt, pickle, remote code, bad template) · 5 prompt does not fit
  the context window · 6 out of memory · 7 a remote engine failed (unreachable, TLS, auth,
  stalled, malformed reply) · 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REJECTED = 4
EXIT_CONTEXT = 5
EXIT_MEMORY = 6
EXIT_REMOTE = 7
EXIT_INTERRUPTED = 130


class LlmchatError(Exception):
    """An error the user can act on: one line of message, one line of hint."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The single stderr line: 'message (hint)'."""
        text = self.message if not self.hint else f"{self.message} — {self.hint}"
        return " ".join(text.split("\n"))


class UsageError(LlmchatError):
    exit_code = EXIT_USAGE


class ConfigError(LlmchatError):
    """models.toml is malformed or names something invalid."""

    exit_code = EXIT_USAGE


class ModelNotFound(LlmchatError):
    exit_code = EXIT_NOT_FOUND


class ModelRejected(LlmchatError):
    """The model's files exist but we refuse them (corrupt, pickle, remote code, bad template)."""

    exit_code = EXIT_REJECTED


class ContextOverflow(LlmchatError):
    exit_code = EXIT_CONTEXT


class OutOfMemory(LlmchatError):
    exit_code = EXIT_MEMORY


class RemoteError(LlmchatError):
    """A remote inference engine could not be reached or answered badly (see remote/http.py)."""

    exit_code = EXIT_REMOTE


class Interrupted(LlmchatError):
    """Ctrl-C: the work stopped; what was produced so far has been shown."""

    exit_code = EXIT_INTERRUPTED


class OutputClosed(Exception):
    """The reader of stdout went away (`| head`). Not an error: stop quietly."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception text (at most 300 characters), for a one-line error."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
