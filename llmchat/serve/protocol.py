"""The wire format (see the package docstring): records to JSON lines and back.

Events travel in the engine's one dict form (`engine.codec`: the same records as `ask --json` and
saved conversations, token bytes in hex), written ASCII-only, so any str the engine makes — lone
surrogates from a broken token included — survives the trip unchanged.
"""

from __future__ import annotations

import json
import socket
import time

from .. import errors
from ..engine import codec
from ..engine.events import Distribution, Finished, TokenEvent

VERSION = 2
MAX_LINE = 512 * 1024 * 1024  # a 64 MiB prompt, JSON-escaped, fits with room to spare


class ProtocolError(Exception):
    """The peer sent something that is not this protocol (or went away mid-line)."""


def dumps(record: dict) -> bytes:
    return codec.dumps(record, compact=True).encode("ascii") + b"\n"


def token_line(event: TokenEvent) -> bytes:
    return dumps({"token": codec.token_to_dict(event)})


def finished_line(finished: Finished) -> bytes:
    return dumps({"finished": codec.finished_to_dict(finished)})


def distribution_line(dist: Distribution) -> bytes:
    return dumps({"distribution": codec.distribution_to_dict(dist)})


def error_line(exc: BaseException) -> bytes:
    if isinstance(exc, errors.LlmchatError):
        info = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
    else:  # a bug in the server: the client shows it like the CLI shows an internal error
        info = {"type": "LlmchatError", "exit_code": errors.EXIT_RUNTIME,
                "message": f"internal error in the server: {type(exc).__name__}: {exc}",
                "hint": "see the server's stderr, or run again with --no-server"}
    return dumps({"error": info})


def _error_classes() -> dict[str, type]:
    found, todo = {}, [errors.LlmchatError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def rebuild_error(info: dict) -> errors.LlmchatError:
    """The same LlmchatError subclass the server raised, so the exit code and the one stderr line
    are those of the in-process path; an unknown name keeps the exit code on the base class."""
    cls = _error_classes().get(str(info.get("type")), errors.LlmchatError)
    exc = cls(str(info.get("message", "")), info.get("hint"))
    exit_code = info.get("exit_code")
    if isinstance(exit_code, int) and exit_code != cls.exit_code:
        exc.exit_code = exit_code
    return exc


class LineReader:
    """Newline-delimited records from a socket. Timeouts leave buffered data in place (a buffered
    file object may lose a partial line on a timeout), so the caller can poll a stop flag."""

    def __init__(self, conn: socket.socket, limit: int = MAX_LINE):
        self.conn, self.limit, self.buffer = conn, limit, bytearray()

    def read(self, deadline: float | None = None, poll=None) -> dict | None:
        """The next record, or None at end of stream. `poll()` is called at every timeout and
        may raise to give up; `deadline` (time.monotonic) bounds the wait."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                return _parse(line)
            if len(self.buffer) > self.limit:
                raise ProtocolError("a line is too long")
            if deadline is not None and time.monotonic() > deadline:
                raise ProtocolError("timed out waiting for a line")
            try:
                chunk = self.conn.recv(1 << 16)
            except socket.timeout:
                if poll is not None:
                    poll()
                continue
            if not chunk:
                if self.buffer:
                    raise ProtocolError("the connection closed mid-line")
                return None
            self.buffer.extend(chunk)


def _parse(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("a record must be a JSON object")
    return value
