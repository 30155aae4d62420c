"""`llmchat serve`: load a model once and answer `ask` requests over a Unix socket, one at a time.

One connection carries one request. The server is single-threaded on purpose: the model and its
PromptCache are not shareable between concurrent generations, and a second client simply waits in
the listen backlog until the first is done. The PromptCache lives as long as the server, so a
request that repeats a prefix (the same system prompt) skips recomputing it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time
from pathlib import Path

from ..errors import Interrupted, LlmchatError, UsageError
from ..events import Finished
from ..interrupt import StopFlag
from . import protocol
from .paths import LIVE, STALE, probe, socket_lock

REQUEST_SECONDS = 30.0  # a client that connects and says nothing is dropped after this
SEND_SECONDS = 600.0  # a client that stops reading (stdout blocked) holds the server at most this long
MAX_SOCKET_PATH = 107  # sockaddr_un.sun_path, minus the terminating NUL


class _Shutdown(BaseException):
    """SIGTERM/SIGINT: leave the accept loop or a generation at once. A BaseException that is not
    a KeyboardInterrupt, because the engine turns KeyboardInterrupt into a finished answer."""

    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code, self.why = code, why


class Listener:
    """The listening socket and the file it made; `close()` removes the file only if it is still
    ours (another server may have replaced a file it took for stale)."""

    def __init__(self, sock: socket.socket, path: Path):
        self.sock, self.path, self.inode = sock, path, os.stat(path).st_ino
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)


def claim_socket(path: Path, alias: str) -> Listener:
    """Bind and listen at `path`: refused when a server answers there; a dead server's socket is
    removed first. The socket file is created 0600 (umask) and chmod-ed again to be sure."""
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise UsageError(f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes",
                         "give a shorter --socket or XDG_RUNTIME_DIR")
    with socket_lock(path):
        state = probe(path)
        if state == LIVE:
            raise LlmchatError(f"a server for {alias} is already running at {path}",
                               f"stop it with `llmchat serve --stop -m {alias}`")
        if state == STALE:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        sock, listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), None
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
            listener = Listener(sock, path)
            os.chmod(path, 0o600)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            if listener is not None:
                listener.close()
            raise LlmchatError(f"cannot listen on {path}: {exc.strerror or exc}", "check the path and its directory") from None
        finally:
            os.umask(old_umask)
    return listener


class Server:
    """The accept loop around one LocalModel with a PromptCache that outlives requests."""

    def __init__(self, loaded, listener: "Listener"):
        from ..cli.answer import LocalModel
        from ..engine import PromptCache

        self.loaded, self.listener, self.sock = loaded, listener, listener.sock
        self.source = LocalModel(loaded, cache=PromptCache())
        self.requests = 0

    def run(self, idle_timeout: float) -> str:
        """Serve until a stop request ("stop request") or `idle_timeout` seconds without a
        connection ("idle"); 0 waits for ever."""
        self.sock.settimeout(idle_timeout or None)
        while True:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                return f"idle for {idle_timeout:g} s"
            with conn:
                if self.handle(conn) == "stop":
                    return "stop request"

    def handle(self, conn: socket.socket) -> str | None:
        conn.settimeout(REQUEST_SECONDS)
        try:
            request = protocol.LineReader(conn).read(deadline=time.monotonic() + REQUEST_SECONDS)
        except (protocol.ProtocolError, OSError):
            return None
        if request is None:  # a liveness probe: connected and hung up
            return None
        conn.settimeout(SEND_SECONDS)
        op = request.get("op")
        if request.get("version") != protocol.VERSION:
            _send(conn, protocol.error_line(UsageError(
                f"protocol version {request.get('version')!r} is not {protocol.VERSION}",
                f"restart the server: llmchat serve --stop -m {self.loaded.spec.alias}")))
        elif op == "ping":
            _send(conn, protocol.dumps({"pong": {"model": self.loaded.spec.alias, "pid": os.getpid(),
                                                 "location": self.loaded.spec.location, "requests": self.requests}}))
        elif op == "stop":
            self.listener.close()  # before replying, so that `serve --stop` returns with the socket gone
            _send(conn, protocol.dumps({"stopping": True}))
            return "stop"
        elif op == "ask":
            self.requests += 1
            self.answer(conn, request)
        else:
            _send(conn, protocol.error_line(UsageError(f"unknown op {op!r}", "use ask, ping or stop")))
        return None

    def answer(self, conn: socket.socket, request: dict) -> None:
        """Prepare the prompt, then stream its events. A failed send means the client left
        (Ctrl-C, `| head`): it sets the engine's stop flag, which ends the generation after the
        current token and leaves the PromptCache consistent."""
        stop = StopFlag()

        def send(line: bytes) -> None:
            if not stop.requested and not _send(conn, line):
                stop.requested = True

        try:
            params = _params(request.get("params"))
            alternatives = int(request.get("logprobs") or 0)
            prompt = self.source.prepare(_text(request.get("prompt")), params, system=request.get("system"),
                                         raw=bool(request.get("raw")), truncate=bool(request.get("truncate")))
            family = dataclasses.asdict(self.loaded.family)
            send(protocol.dumps({
                "prompt": {"ids": prompt.ids, "templated": prompt.templated, "starts_thinking": prompt.starts_thinking,
                           "dropped_tokens": prompt.dropped_tokens},
                "model": {"alias": self.loaded.spec.alias, "quant": self.loaded.quant, "backend": self.loaded.backend,
                          "family": family}}))
            for item in self.source.generate(prompt, params, alternatives=alternatives, should_stop=stop):
                if isinstance(item, Finished):
                    send(protocol.finished_line(item))
                    break
                send(protocol.token_line(item))
        except LlmchatError as exc:
            send(protocol.error_line(exc))
        except Exception as exc:  # a bug: keep serving; the client reports it in one line
            print(f"llmchat: serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            send(protocol.error_line(exc))


def _send(conn: socket.socket, line: bytes) -> bool:
    try:
        conn.sendall(line)
        return True
    except OSError:  # EPIPE/ECONNRESET: the client went away; a timeout: it stopped reading
        return False


def _text(value) -> str:
    if not isinstance(value, str):
        raise UsageError("the request has no prompt text", "send {\"prompt\": \"...\"}")
    return value


def _params(value):
    """SamplingParams from the request (validated by SamplingParams itself: same message, same
    exit code as the in-process path)."""
    from ..sampling import SamplingParams

    names = {f.name for f in dataclasses.fields(SamplingParams)}
    if not isinstance(value, dict) or set(value) - names:
        raise UsageError(f"bad sampling params in the request: {value!r}", f"allowed keys: {', '.join(sorted(names))}")
    value = dict(value)
    if "stop" in value:
        value["stop"] = tuple(value["stop"])
    return SamplingParams(**value)


@contextlib.contextmanager
def _shutdown_signals():
    """SIGTERM → exit 0, SIGINT → exit 130: both leave through `finally`, which removes the socket."""

    def handler(code, why):
        def raise_it(signum, frame):
            raise _Shutdown(code, why)
        return raise_it

    previous = {sig: signal.signal(sig, handler(code, why))
                for sig, code, why in ((signal.SIGTERM, 0, "SIGTERM"), (signal.SIGINT, 130, "interrupted"))}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve(spec, *, path: Path, dtype: str | None, quant: str | None, device: str | None, idle_timeout: float,
          download: bool = False, force: bool = False) -> int:
    """Claim the socket first (a second `serve` for the model fails fast, and an `ask` arriving
    during the load waits for it instead of loading a second copy), then load, then serve."""
    listener = claim_socket(path, spec.alias)
    try:
        with _shutdown_signals():
            try:
                from ..loading import load

                loaded = load(spec, dtype=dtype, device=device, quant=quant, download=download,
                              progress=sys.stderr.isatty(), force=force)
                server = Server(loaded, listener)
                print(f"llmchat: serving {spec.alias} on {path}", file=sys.stderr, flush=True)
                why = server.run(idle_timeout)
            except _Shutdown as exc:
                if exc.code:
                    raise Interrupted("interrupted") from None
                why = exc.why
    finally:
        listener.close()
    print(f"llmchat: stopped serving {spec.alias} ({why})", file=sys.stderr, flush=True)
    return 0
