"""`llmchat serve`: load a model once and answer requests over a Unix socket, one client at a time.

The server holds one `engine.source.LocalModel` and answers the wire protocol (see the package
docstring) with it: a one-shot request (`ask`, `ping`, `stop`) is answered and the connection
closed; after `hello` the connection carries ModelSource calls (render, prepare, generate, next)
until the client hangs up. The server is single-threaded on purpose: the model and its
PromptCache are not shareable between concurrent generations, and a second client simply waits in
the listen backlog until the first is done. The PromptCache lives as long as the server, so a
request that repeats a prefix (the same system prompt) skips recomputing it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

from ..engine import codec
from ..engine.events import Finished
from ..engine.sampling import SamplingParams
from ..engine.source import LocalModel, ModelSource
from ..errors import Interrupted, LlmchatError, UsageError
from ..model.progress import SILENT, Progress
from ..signals import StopFlag
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
    """The accept loop around one ModelSource (a LocalModel whose PromptCache outlives requests)."""

    ONE_SHOT = ("ask", "ping", "stop")
    CALLS = ("render", "prepare", "generate", "next", "score")

    def __init__(self, source: ModelSource, listener: "Listener", options: dict | None = None):
        self.source, self.listener, self.sock = source, listener, listener.sock
        self.options = dict(options or {})  # the load options as given (serve status tells servers apart)
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
        """One connection: a one-shot request, or `hello` and then calls until the client hangs up
        (or says nothing for REQUEST_SECONDS)."""
        reader, session = protocol.LineReader(conn), False
        while True:
            conn.settimeout(REQUEST_SECONDS)
            try:
                request = reader.read(deadline=time.monotonic() + REQUEST_SECONDS)
            except (protocol.ProtocolError, OSError):
                return None
            if request is None:  # hung up (a liveness probe connects and hangs up at once)
                return None
            conn.settimeout(SEND_SECONDS)
            op = request.get("op")
            if request.get("version") != protocol.VERSION:
                _send(conn, protocol.error_line(UsageError(
                    f"protocol version {request.get('version')!r} is not {protocol.VERSION}",
                    f"restart the server: llmchat serve --stop -m {self.source.spec.alias}")))
                return None
            if op == "stop":
                self.listener.close()  # before replying, so that `serve --stop` returns with the socket gone
                _send(conn, protocol.dumps({"stopping": True}))
                return "stop"
            if op == "ping":
                _send(conn, protocol.dumps({"pong": {"model": self.source.spec.alias, "pid": os.getpid(),
                                                     "location": self.source.spec.location, "requests": self.requests,
                                                     "options": self.options, "weights": self.source.weights}}))
                return None
            if op == "ask":
                self.requests += 1
                self.answer(conn, request)
                return None
            if op == "hello":
                session = True
                if not _send(conn, protocol.dumps({"model": self._model_record()})):
                    return None
            elif op in self.CALLS and session:
                if op == "generate":
                    self.requests += 1
                if not self.call(conn, op, request):
                    return None
            else:
                _send(conn, protocol.error_line(UsageError(
                    f"unknown op {op!r}" if op not in self.CALLS else f"op {op!r} needs a hello first",
                    "use ask, ping or stop, or hello then render, prepare, generate, next or score")))
                return None

    def _model_record(self) -> dict:
        source = self.source
        return {"alias": source.spec.alias, "weights": source.weights, "backend": source.backend,
                "context_length": source.context_length, "family": codec.family_to_dict(source.family)}

    def call(self, conn: socket.socket, op: str, request: dict) -> bool:
        """One ModelSource call after hello; False when the client went away."""
        source = self.source
        try:
            if op == "render":
                return _send(conn, protocol.dumps({"ids": source.render(
                    _messages(request.get("messages")), add_generation_prompt=bool(request.get("add_generation_prompt", True)))}))
            if op == "prepare":
                prompt = source.prepare(_text(request.get("prompt")), system=request.get("system"),
                                        raw=bool(request.get("raw")), truncate=bool(request.get("truncate")),
                                        max_new_tokens=_count(request.get("max_tokens"), "max_tokens"),
                                        keep=int(request.get("keep") or 0))
                return _send(conn, protocol.dumps({"prompt": _prompt_record(prompt)}))
            if op == "next":
                dist = source.next_distribution(_ids(request.get("ids")), _count(request.get("k", 10), "k"))
                return _send(conn, protocol.distribution_line(dist))
            if op == "score":
                window = request.get("window")
                result = source.score(_ids(request.get("ids")), _count(request.get("start"), "start"),
                                      alternatives=int(request.get("logprobs") or 0),
                                      window=None if window is None else _count(window, "window"))
                return _send(conn, protocol.dumps({"score": codec.score_to_dict(result)}))
            params = SamplingParams.from_dict(request.get("params"))
            return self.stream(conn, _ids(request.get("ids")), params, int(request.get("logprobs") or 0),
                               tuple(request.get("stop") or ()), _ids(request.get("continues") or []))
        except Exception as exc:  # noqa: BLE001  (reported to the client; the server goes on)
            return _send_error(conn, exc)

    def stream(self, conn: socket.socket, ids: list[int], params: SamplingParams, alternatives: int,
               stop_strings: tuple = (), continues: list[int] | None = None) -> bool:
        """The events of one generation. A failed send means the client left (Ctrl-C, `| head`):
        it sets the engine's stop flag, which ends the generation after the current token and
        leaves the PromptCache consistent."""
        stop = StopFlag()

        def send(line: bytes) -> None:
            if not stop.requested and not _send(conn, line):
                stop.requested = True

        for item in self.source.generate(ids, params, alternatives=alternatives, stop=stop_strings, should_stop=stop,
                                         continues=continues or ()):
            if isinstance(item, Finished):
                send(protocol.finished_line(item))
                break
            send(protocol.token_line(item))
        return not stop.requested

    def answer(self, conn: socket.socket, request: dict) -> None:
        """`ask` in one request: prepare the prompt, then stream its events."""
        try:
            params = SamplingParams.from_dict(request.get("params"))
            prompt = self.source.prepare(_text(request.get("prompt")), system=request.get("system"),
                                         raw=bool(request.get("raw")), truncate=bool(request.get("truncate")),
                                         max_new_tokens=params.max_new_tokens)
            if _send(conn, protocol.dumps({"prompt": _prompt_record(prompt), "model": self._model_record()})):
                self.stream(conn, prompt.ids, params, int(request.get("logprobs") or 0))
        except Exception as exc:  # noqa: BLE001
            _send_error(conn, exc)


def _send_error(conn: socket.socket, exc: Exception) -> bool:
    """An LlmchatError goes back as itself; anything else is a bug, logged, and sent as an
    internal error so that the client reports it in one line and the server keeps serving."""
    if not isinstance(exc, LlmchatError):
        print(f"llmchat: serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return _send(conn, protocol.error_line(exc))


def _send(conn: socket.socket, line: bytes) -> bool:
    try:
        conn.sendall(line)
        return True
    except OSError:  # EPIPE/ECONNRESET: the client went away; a timeout: it stopped reading
        return False


def _prompt_record(prompt) -> dict:
    return {"ids": prompt.ids, "templated": prompt.templated, "starts_thinking": prompt.starts_thinking,
            "dropped_tokens": prompt.dropped_tokens}


def _text(value) -> str:
    if not isinstance(value, str):
        raise UsageError("the request has no prompt text", "send {\"prompt\": \"...\"}")
    return value


def _ids(value) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise UsageError("the request's ids must be a list of token ids", "send {\"ids\": [1, 2, 3]}")
    return value


def _count(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"the request's {name} must be a positive integer, not {value!r}", f"e.g. {{\"{name}\": 8}}")
    return value


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                              and isinstance(m.get("content"), str) for m in value):
        raise UsageError("the request's messages must be a list of {role, content}", "see the chat template's roles")
    return value


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
          download: bool = False, force: bool = False, progress: Progress = SILENT) -> int:
    """Claim the socket first (a second `serve` for the model fails fast, and an `ask` arriving
    during the load waits for it instead of loading a second copy), then load (reporting to
    `progress`), then serve."""
    listener = claim_socket(path, spec.alias)
    try:
        with _shutdown_signals():
            try:
                from ..model.load import load

                loaded = load(spec, dtype=dtype, device=device, quant=quant, download=download,
                              progress=progress, force=force)
                server = Server(LocalModel(loaded), listener, {"dtype": dtype, "quant": quant, "device": device})
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
