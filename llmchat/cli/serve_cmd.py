"""`llmchat serve` — keep a model loaded; `ask` for the same model and options answers through it.

`llmchat serve --stop` / `llmchat serve stop` asks a server to exit; `--status` / `status` lists
the sockets in the runtime directory and whether a server answers behind each.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app
from ..errors import LlmchatError, UsageError
from .common import (DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, FORCE_OPTION, MODEL_OPTION, QUANT_OPTION,
                     sampling_params)

ACTIONS = ("stop", "status")


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def serve(
    ctx: typer.Context,
    action: Optional[str] = typer.Argument(None, metavar="[stop|status]", help="Stop a server, or list them."),
    model: Optional[str] = MODEL_OPTION,
    dtype: Optional[str] = DTYPE_OPTION,
    quant: Optional[str] = QUANT_OPTION,
    device: Optional[str] = DEVICE_OPTION,
    socket_path: Optional[str] = typer.Option(None, "--socket", metavar="PATH",
                                              help="Listen here instead of $XDG_RUNTIME_DIR/llmchat/<key>.sock."),
    idle_timeout: float = typer.Option(0.0, "--idle-timeout", metavar="SECONDS",
                                       help="Exit after this long without a request (0 = never)."),
    stop: bool = typer.Option(False, "--stop", help="Ask the server for this model and options to exit "
                                                    "(without options: the model's only server)."),
    stop_all: bool = typer.Option(False, "--all", help="With --stop: stop every server in the runtime directory."),
    status: bool = typer.Option(False, "--status", help="List server sockets and whether they answer."),
    http: Optional[str] = typer.Option(None, "--http", metavar="[HOST:]PORT",
                                       help="Serve the OpenAI-compatible HTTP API instead (host 127.0.0.1 unless given)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="NAME",
                                              help="With --http: require 'Authorization: Bearer' with the key in $NAME."),
    insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth",
                                          help="With --http on a non-loopback address: allow requests without a key."),
    max_logprobs: int = typer.Option(20, "--max-logprobs", metavar="K", help="With --http: the most top_logprobs a request may ask."),
    max_tokens_limit: int = typer.Option(4096, "--max-tokens-limit", metavar="N",
                                         help="With --http: the most max_tokens a request may ask."),
    max_queue: int = typer.Option(16, "--max-queue", metavar="N", help="With --http: requests that may wait (then 429)."),
    download: bool = DOWNLOAD_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Load a model once and answer `llmchat ask` through a Unix socket (one request at a time),
    or other tools through an OpenAI-compatible HTTP API (--http)."""
    if action is not None and action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}", "use `llmchat serve stop` or `llmchat serve status`")
    stop, status = stop or action == "stop", status or action == "status"
    if stop and status:
        raise UsageError("--stop and --status do not go together", "pick one")
    if not (idle_timeout >= 0):
        raise UsageError(f"--idle-timeout must be ≥ 0 (got {idle_timeout:g})", "e.g. --idle-timeout 600, or 0 for never")
    if status:
        _status()
        return
    if http is not None:
        if stop or action is not None:
            raise UsageError("--http serves; it does not go with stop or status", "drop --http, or the action")
        _serve_http(ctx, model, http, api_key_env=api_key_env, insecure=insecure_no_auth, dtype=dtype, quant=quant,
                    device=device, download=download, force=force, limits=(max_logprobs, max_tokens_limit, max_queue))
        return
    if api_key_env or insecure_no_auth:
        raise UsageError("--api-key-env and --insecure-no-auth are for --http", "add --http [HOST:]PORT")
    if stop_all:
        if not stop or model or socket_path:
            raise UsageError("--all goes with --stop alone", "llmchat serve --stop --all")
        _stop_all()
        return
    spec = local_only(ctx.obj.registry().get(model))
    path = _socket(spec, socket_path, dtype=dtype, quant=quant, device=device, create=not stop)
    if stop:
        if socket_path is None and not (dtype or quant or device):
            path = _only_server(spec.alias, path)
        _stop(spec.alias, path)
        return
    from ..render.progress import terminal_progress
    from ..serve.server import serve as run_server

    raise typer.Exit(run_server(spec, path=path, dtype=dtype, quant=quant, device=device, idle_timeout=idle_timeout,
                                download=download, force=force, progress=terminal_progress()))


def _serve_http(ctx, model, address, *, api_key_env, insecure, dtype, quant, device, download, force, limits) -> None:
    from ..serve.http import Limits, check_auth, parse_address, serve_http

    max_logprobs, max_tokens, max_queue = limits
    if max_logprobs < 0 or max_tokens < 1 or max_queue < 1:
        raise UsageError("--max-logprobs must be ≥ 0, --max-tokens-limit and --max-queue ≥ 1", "e.g. --max-logprobs 20")
    host, port = parse_address(address)
    key = check_auth(host, api_key_env, insecure)
    spec = local_only(ctx.obj.registry().get(model))
    defaults = sampling_params(spec)

    def load_source():
        from ..engine.source import LocalModel
        from ..model.load import load
        from ..render.progress import terminal_progress

        return LocalModel(load(spec, dtype=dtype, device=device, quant=quant, download=download,
                               progress=terminal_progress(), force=force))

    raise typer.Exit(serve_http(spec, load_source, defaults, host=host, port=port, api_key=key,
                                limits=Limits(max_logprobs=max_logprobs, max_tokens=max_tokens, max_queue=max_queue)))


def _socket(spec, given: str | None, *, dtype, quant, device, create: bool) -> Path:
    from ..serve.client import socket_for
    from ..serve.paths import private_dir

    if given:
        path = Path(given).expanduser()
        if not path.parent.is_dir():
            raise UsageError(f"{path.parent} is not a directory", "create it, or give another --socket")
        return path
    path = socket_for(spec, dtype=dtype, quant=quant, device=device)
    private_dir(path.parent, create=create)
    return path


def _servers() -> list[tuple[Path, dict | None]]:
    """(socket, pong or None) for every socket in the runtime directory."""
    from ..paths import runtime_dir
    from ..serve.client import request
    from ..serve.paths import live_sockets

    out = []
    for path in live_sockets(runtime_dir()):
        reply = request(path, "ping", timeout=2.0)
        out.append((path, reply.get("pong") if reply else None))
    return out


def _options(pong: dict) -> str:
    given = {k: v for k, v in (pong.get("options") or {}).items() if v}
    return ",".join(f"{k}={v}" for k, v in given.items()) or "defaults"


def _only_server(alias: str, default_path: Path) -> Path:
    """`serve --stop -m M` without load options: the server at the default key, else the model's
    only server; several are listed with the options that tell them apart."""
    if default_path.exists():
        return default_path
    mine = [(path, pong) for path, pong in _servers() if pong and pong.get("model") == alias]
    if len(mine) == 1:
        return mine[0][0]
    if len(mine) > 1:
        listed = "; ".join(f"{_options(pong)} ({path.name})" for path, pong in mine)
        raise UsageError(f"{len(mine)} servers run {alias}: {listed}",
                         "add the options of the one to stop (e.g. --quant int8), or use --stop --all")
    return default_path


def _stop_all() -> None:
    from ..serve.client import request

    servers = [(path, pong) for path, pong in _servers() if pong]
    if not servers:
        raise LlmchatError("no server is running", "start one with `llmchat serve`")
    for path, pong in servers:
        reply = request(path, "stop", timeout=60.0)
        ok = reply is not None and reply.get("stopping")
        print(f"llmchat: {'stopped' if ok else 'could not stop'} the server for {pong.get('model')} "
              f"({_options(pong)}) at {path}", file=sys.stderr)


def _stop(alias: str, path: Path) -> None:
    from ..serve.client import request
    from ..serve.paths import STALE, probe, remove_stale

    reply = request(path, "stop", timeout=60.0)
    if reply is not None and reply.get("stopping"):
        print(f"llmchat: stopped the server for {alias} at {path}", file=sys.stderr)
        return
    if probe(path) == STALE:
        remove_stale(path)
        raise LlmchatError(f"no server for {alias} is running (removed the stale socket {path})")
    if reply is None and probe(path) == "absent":
        raise LlmchatError(f"no server for {alias} is running at {path}", "start one with `llmchat serve`")
    raise LlmchatError(f"the server at {path} did not stop", "it may be busy; try again, or kill it")


def _status() -> None:
    """One line per socket on stdout: state, model, pid, requests served, load options, path."""
    from ..serve.client import request
    from ..paths import runtime_dir
    from ..serve.paths import LIVE, live_sockets, probe

    sockets = live_sockets(runtime_dir())
    if not sockets:
        print(f"llmchat: no servers in {runtime_dir()}", file=sys.stderr)
    for path in sockets:
        reply = request(path, "ping", timeout=2.0)
        pong = reply.get("pong") if reply else None
        if pong:
            print(f"live\t{pong.get('model')}\tpid {pong.get('pid')}\t{pong.get('requests')} requests\t"
                  f"{_options(pong)}\t{path}")
        else:
            print(f"{'busy' if probe(path) == LIVE else 'stale'}\t-\t-\t-\t-\t{path}")


def local_only(spec):
    if spec.source == "remote":
        raise UsageError(f"{spec.alias} is a remote engine ({spec.location}); `llmchat serve` serves weights loaded here",
                         "use the remote entry directly with chat, ask, next or tokenize")
    return spec
