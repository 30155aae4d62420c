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
from .common import DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, FORCE_OPTION, MODEL_OPTION, QUANT_OPTION

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
    stop: bool = typer.Option(False, "--stop", help="Ask the server for this model and options to exit."),
    status: bool = typer.Option(False, "--status", help="List server sockets and whether they answer."),
    download: bool = DOWNLOAD_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Load a model once and answer `llmchat ask` through a Unix socket (one request at a time)."""
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
    spec = ctx.obj.registry().get(model)
    path = _socket(spec, socket_path, dtype=dtype, quant=quant, device=device, create=not stop)
    if stop:
        _stop(spec.alias, path)
        return
    from ..render.progress import terminal_progress
    from ..serve.server import serve as run_server

    raise typer.Exit(run_server(spec, path=path, dtype=dtype, quant=quant, device=device, idle_timeout=idle_timeout,
                                download=download, force=force, progress=terminal_progress()))


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
    """One line per socket on stdout: state, model, pid, requests served, path."""
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
            print(f"live\t{pong.get('model')}\tpid {pong.get('pid')}\t{pong.get('requests')} requests\t{path}")
        else:
            print(f"{'busy' if probe(path) == LIVE else 'stale'}\t-\t-\t-\t{path}")
