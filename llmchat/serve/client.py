"""The client side of the server: find a live one, use it as a ModelSource, start one detached.

`RemoteModel` implements `engine.source.ModelSource` over one connection to `llmchat serve`:
`render`, `prepare`, `generate` and `next_distribution` run in the server (errors come back as
the same LlmchatError class), and events are rebuilt from the wire by the engine's codec, so
`answer_once` renders them with exactly the code the in-process path uses. Its tokenizer (for
callers that decode locally) is the torch-free lite tokenizer, loaded on first use. Nothing here
imports torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..engine import codec
from ..engine.events import Distribution, Finished, TokenEvent
from ..engine.sampling import SamplingParams
from ..errors import LlmchatError
from ..paths import state_dir
from ..prompt.build import Prompt
from . import protocol
from .paths import LIVE, connect, default_socket, private_dir, probe, remove_stale, server_key

POLL_SECONDS = 0.1  # how often a client waiting for a token checks its Ctrl-C flag


class ServerGone(Exception):
    """The server hung up before it answered: nothing was shown yet, so answer in-process."""


class _Stopped(Exception):
    pass


class ServerBusy(Exception):
    """The server did not take the request within the caller's bound (`ask --server-wait`)."""

    def __init__(self, waited: float):
        super().__init__(f"busy for {waited:.1f} s")
        self.waited = waited


def socket_for(spec, *, dtype: str | None, quant: str | None, device: str | None) -> Path:
    return default_socket(server_key(spec, dtype=dtype, quant=quant, device=device))


def find_server(spec, *, dtype: str | None, quant: str | None, device: str | None, wait: float | None = None,
                on_wait: Callable[[], None] | None = None) -> "RemoteModel | None":
    """A connection to the live server for this model and these options, or None. A socket left by
    a dead server is removed on the way; a socket directory that is not ours and private is never
    used (someone else's socket could read our prompts), so `ask` quietly loads in-process."""
    try:
        path = socket_for(spec, dtype=dtype, quant=quant, device=device)
        if not os.path.lexists(path):
            return None
        private_dir(path.parent, create=False)
        conn = connect(path)
        if conn is None:
            remove_stale(path)
            return None
    except (LlmchatError, OSError):
        return None
    try:
        return RemoteModel(conn, spec, wait=wait, on_wait=on_wait)
    except ServerGone:
        return None


class RemoteModel:
    """A ModelSource served by `llmchat serve`, over one connection (`hello`, then calls)."""

    def __init__(self, conn, spec, *, wait: float | None = None, on_wait: Callable[[], None] | None = None):
        """Say hello and wait for the server to take us: it may be busy with another client or still
        loading. After a second `on_wait()` is called (once); after `wait` seconds ServerBusy."""
        self.conn, self.spec = conn, spec
        self.reader = protocol.LineReader(conn)
        self._tokenizer = None
        started, told = time.monotonic(), []

        def poll() -> None:
            waited = time.monotonic() - started
            if not told and waited > 1.0 and on_wait is not None:
                told.append(on_wait())
            if wait is not None and waited > wait:
                raise ServerBusy(waited)

        self._send({"op": "hello"})
        self.conn.settimeout(POLL_SECONDS)
        try:
            reply = self.reader.read(poll=poll)
        except ServerBusy:
            self.close()
            raise
        except (OSError, protocol.ProtocolError):
            reply = None
        self.waited = time.monotonic() - started  # counted in the first answer's timings
        if reply is None or "model" not in reply:
            self.close()
            if reply is not None and "error" in reply:
                raise protocol.rebuild_error(reply["error"])
            raise ServerGone()
        model = reply["model"]
        try:
            self.weights, self.backend = str(model["weights"]), str(model["backend"])
            self.context_length = int(model["context_length"])
            self.family = codec.family_from_dict(model["family"])
        except (KeyError, TypeError, ValueError):
            self.close()
            raise ServerGone() from None

    # ------------------------------------------------------------------ ModelSource
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..model.files import tokenizer_folder
            from ..tokenizer.lite import LiteTokenizer

            self._tokenizer = LiteTokenizer(tokenizer_folder(self.spec, check=False), self.spec)
        return self._tokenizer

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        ids = self._call({"op": "render", "messages": messages, "add_generation_prompt": add_generation_prompt}, "ids")
        return [int(i) for i in ids]

    def prepare(self, text: str, *, system: str | None, raw: bool, truncate: bool, max_new_tokens: int,
                keep: int = 0) -> Prompt:
        info = self._call({"op": "prepare", "prompt": text, "system": system, "raw": raw, "truncate": truncate,
                           "max_tokens": max_new_tokens, "keep": keep}, "prompt")
        try:
            return Prompt(ids=[int(i) for i in info["ids"]], templated=bool(info["templated"]),
                          starts_thinking=bool(info["starts_thinking"]), dropped_tokens=int(info["dropped_tokens"]))
        except (KeyError, TypeError, ValueError):
            self.close()
            raise ServerGone() from None

    def next_distribution(self, ids: list[int], k: int = 10) -> Distribution:
        data = self._call({"op": "next", "ids": list(ids), "k": k}, "distribution")
        try:
            return codec.distribution_from_dict(data)
        except (KeyError, TypeError, ValueError):
            raise _gone_mid_answer("it sent a damaged distribution") from None

    def generate(self, ids: list[int], params: SamplingParams, *, alternatives: int = 5, stop: Iterable[str] = (),
                 should_stop: Callable[[], bool] | None = None,
                 on_prefill: Callable[[int, int], None] | None = None,
                 continues: Iterable[int] = ()) -> Iterator[TokenEvent | Finished]:
        """(The server does not report its prompt's progress: `on_prefill` is not called.)"""
        self._send({"op": "generate", "ids": list(ids), "params": params.to_dict(), "logprobs": alternatives,
                    "stop": list(stop), "continues": list(continues)})
        return self._events(len(ids), should_stop or (lambda: False))

    def score(self, ids: list[int], start: int, *, alternatives: int = 5, window: int | None = None, progress=None):
        data = self._call({"op": "score", "ids": list(ids), "start": start, "logprobs": alternatives, "window": window},
                          "score")
        try:
            return codec.score_from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _gone_mid_answer("it sent a damaged score") from None

    def forget(self) -> None:
        """The server's PromptCache keeps only what the next request shares: nothing to drop here."""

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ wire
    def _send(self, record: dict) -> None:
        try:
            self.conn.settimeout(None)
            self.conn.sendall(protocol.dumps({"version": protocol.VERSION, **record}))
        except OSError:
            self.close()
            raise ServerGone() from None

    def _call(self, record: dict, key: str):
        """Send one request and read its one reply: the server's error raised as its own class, a
        hang-up before any reply as ServerGone (nothing was shown yet: answer in-process)."""
        self._send(record)
        try:
            reply = self.reader.read()
        except (OSError, protocol.ProtocolError):
            reply = None
        if reply is None:
            self.close()
            raise ServerGone()
        if "error" in reply:
            raise protocol.rebuild_error(reply["error"])
        if key not in reply:
            self.close()
            raise ServerGone()
        return reply[key]

    def _events(self, prompt_tokens: int, should_stop: Callable[[], bool]):
        """Events off the wire. Ctrl-C (should_stop) closes the connection — the server's next send
        fails, which stops its generation — and ends the answer as "interrupted"."""
        started, generated, first_at = time.perf_counter(), 0, None

        def poll():
            if should_stop():
                raise _Stopped()

        self.conn.settimeout(POLL_SECONDS)
        try:
            while True:
                try:
                    poll()
                    record = self.reader.read(poll=poll)
                except _Stopped:
                    break
                except (OSError, protocol.ProtocolError) as exc:
                    self.close()
                    raise _gone_mid_answer(str(exc)) from None
                if record is None:
                    self.close()
                    raise _gone_mid_answer("it closed the connection")
                try:
                    if "token" in record:
                        event = codec.token_from_dict(record["token"])
                    elif "finished" in record:
                        finished = codec.finished_from_dict(record["finished"])
                        if self.waited:  # the time spent waiting for the server is part of this answer
                            finished = replace(finished, ttft=finished.ttft + self.waited,
                                               total_seconds=finished.total_seconds + self.waited)
                            self.waited = 0.0
                        yield finished
                        return
                    elif "error" in record:
                        raise protocol.rebuild_error(record["error"])
                    else:
                        raise KeyError(sorted(record))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    self.close()
                    raise _gone_mid_answer(f"unexpected record {exc}") from None
                generated += 1
                first_at = first_at or time.perf_counter()
                yield event
        except GeneratorExit:  # the caller stopped reading mid-answer: the server must stop too
            self.close()
            raise
        self.close()  # interrupted: the only way to stop the server's generation is to hang up
        now = time.perf_counter()
        yield Finished(reason="interrupted", prompt_tokens=prompt_tokens, generated_tokens=generated,
                       reused_tokens=0, ttft=(first_at or now) - started, prefill_tps=0.0, decode_tps=0.0,
                       total_seconds=now - started)


def _gone_mid_answer(why: str) -> LlmchatError:
    return LlmchatError(f"the server stopped in the middle of the answer ({why})", "run again, or pass --no-server")


def spawn_server(models_path: str | None, model: str | None, *, dtype: str | None, quant: str | None,
                 device: str | None, spec) -> bool:
    """Start `llmchat serve ... --idle-timeout 600` detached (its own session, so the shell's
    Ctrl-C and hang-up do not reach it), logging to $XDG_STATE_HOME/llmchat/serve.log. Does not
    wait for it. False when a server is already up (nothing started)."""
    try:
        if probe(socket_for(spec, dtype=dtype, quant=quant, device=device)) == LIVE:
            return False
    except OSError:
        pass
    args = [sys.executable, "-m", "llmchat.serve"]
    if models_path:
        args += ["--models", os.path.abspath(os.path.expanduser(models_path))]
    args.append("serve")
    for flag, value in (("-m", model), ("--dtype", dtype), ("--quant", quant), ("--device", device)):
        if value is not None:
            args += [flag, value]
    args += ["--idle-timeout", "600"]
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "serve.log", "ab") as log:
        subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                         start_new_session=True, close_fds=True)
    return True


def request(path: Path, op: str, timeout: float = 5.0) -> dict | None:
    """One small request (ping, stop) and its reply; None when nobody answers in time."""
    conn = connect(path, timeout)
    if conn is None:
        return None
    with conn:
        try:
            conn.sendall(protocol.dumps({"version": protocol.VERSION, "op": op}))
            return protocol.LineReader(conn).read(deadline=time.monotonic() + timeout)
        except (OSError, protocol.ProtocolError):
            return None
