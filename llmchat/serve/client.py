"""The `ask` side of the server: find a live one, stream an answer from it, start one detached.

`RemoteModel` is a model source like `cli.answer.LocalModel`: `prepare()` sends the request and
returns the server's Prompt (or raises the server's error as the same LlmchatError class), and
`generate()` yields the TokenEvents and the Finished rebuilt from the wire, so `answer_once`
renders them with exactly the code the in-process path uses. Nothing here imports torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .. import prompting
from ..errors import LlmchatError
from ..events import Finished
from . import protocol
from .paths import LIVE, connect, default_socket, private_dir, probe, remove_stale, server_key

POLL_SECONDS = 0.1  # how often a client waiting for a token checks its Ctrl-C flag


class ServerGone(Exception):
    """The server hung up before it answered: nothing was shown yet, so answer in-process."""


class _Stopped(Exception):
    pass


def socket_for(spec, *, dtype: str | None, quant: str | None, device: str | None) -> Path:
    return default_socket(server_key(spec, dtype=dtype, quant=quant, device=device))


def find_server(spec, *, dtype: str | None, quant: str | None, device: str | None,
                alternatives: int) -> "RemoteModel | None":
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
    return RemoteModel(conn, spec, alternatives)


class RemoteModel:
    """A model source served by `llmchat serve` over one connection (one request)."""

    def __init__(self, conn, spec, alternatives: int):
        self.conn, self.spec, self.alternatives = conn, spec, alternatives
        self.reader = protocol.LineReader(conn)
        self.quant = self.backend = self.family = None  # known once the server has answered

    def prepare(self, text: str, params, *, system: str | None, raw: bool, truncate: bool) -> prompting.Prompt:
        params_record = {name: getattr(params, name) for name in
                         ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "max_new_tokens")}
        params_record["stop"] = list(params.stop)
        request = {"version": protocol.VERSION, "op": "ask", "prompt": text, "system": system, "raw": raw,
                   "truncate": truncate, "logprobs": self.alternatives, "params": params_record}
        try:
            # No timeout while waiting: the server may be busy with another client or still loading.
            self.conn.settimeout(None)
            self.conn.sendall(protocol.dumps(request))
            head = self.reader.read()
        except (OSError, protocol.ProtocolError):
            head = None
        if head is None:
            self.conn.close()
            raise ServerGone()
        if "error" in head:
            self.conn.close()
            raise protocol.rebuild_error(head["error"])
        try:
            model, info = head["model"], head["prompt"]
            self.quant, self.backend = model["quant"], model["backend"]
            self.family = protocol.family(model["family"])
            return prompting.Prompt(ids=list(info["ids"]), templated=bool(info["templated"]),
                                    starts_thinking=bool(info["starts_thinking"]),
                                    dropped_tokens=int(info["dropped_tokens"]))
        except (KeyError, TypeError, ValueError):
            self.conn.close()
            raise ServerGone() from None

    def generate(self, prompt: prompting.Prompt, params, *, alternatives: int, should_stop):
        if alternatives != self.alternatives:  # the request (sent by prepare) asked for self.alternatives
            raise ValueError(f"RemoteModel was asked for {self.alternatives} alternatives, not {alternatives}")
        return self._events(prompt, should_stop)

    def _events(self, prompt: prompting.Prompt, should_stop):
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
                    raise _gone_mid_answer(str(exc)) from None
                if record is None:
                    raise _gone_mid_answer("it closed the connection")
                if "token" in record:
                    generated += 1
                    first_at = first_at or time.perf_counter()
                    yield protocol.token_event(record["token"])
                elif "finished" in record:
                    yield protocol.finished_event(record["finished"])
                    return
                elif "error" in record:
                    raise protocol.rebuild_error(record["error"])
                else:
                    raise _gone_mid_answer(f"unexpected record {sorted(record)}")
        finally:
            self.conn.close()
        now = time.perf_counter()
        yield Finished(reason="interrupted", prompt_tokens=len(prompt.ids), generated_tokens=generated,
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
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "llmchat"
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
