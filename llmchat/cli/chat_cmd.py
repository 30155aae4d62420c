"""`llmchat chat` — the interactive terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app
from ..errors import UsageError
from .common import (DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, FORCE_OPTION, MAX_TOKENS_OPTION, MIN_P_OPTION,
                     MODEL_OPTION, QUANT_OPTION, REPETITION_OPTION, TEMPERATURE_OPTION, TOP_K_OPTION, TOP_P_OPTION,
                     sampling_params)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def chat(
    ctx: typer.Context,
    model: Optional[str] = MODEL_OPTION,
    system: Optional[str] = typer.Option(None, "-s", "--system", help="System prompt."),
    view: Optional[str] = typer.Option(None, "--view", metavar="VIEW",
                                       help="text (markdown, the default), tokens (boundaries) or probs (colour by probability)."),
    think: Optional[str] = typer.Option(None, "--think", metavar="MODE",
                                        help="show (the default): stream reasoning, then collapse it; hide: summary only."),
    temperature: Optional[float] = TEMPERATURE_OPTION,
    top_p: Optional[float] = TOP_P_OPTION,
    top_k: Optional[int] = TOP_K_OPTION,
    min_p: Optional[float] = MIN_P_OPTION,
    repetition_penalty: Optional[float] = REPETITION_OPTION,
    seed: Optional[int] = typer.Option(None, "--seed"),
    max_tokens: Optional[int] = MAX_TOKENS_OPTION,
    resume: bool = typer.Option(False, "--continue", help="Resume the last conversation (auto-saved on exit)."),
    load_path: Optional[str] = typer.Option(None, "--load", help="Start from a saved conversation."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not read or write the input history."),
    dtype: Optional[str] = DTYPE_OPTION,
    quant: Optional[str] = QUANT_OPTION,
    device: Optional[str] = DEVICE_OPTION,
    download: bool = DOWNLOAD_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Talk to a model; see its tokens and probabilities with /view, /inspect and /branch."""
    from ..render.styles import VIEWS

    if view is not None and view not in VIEWS:
        raise UsageError(f"--view {view!r} is not one of {', '.join(VIEWS)}", "e.g. --view probs")
    if think is not None and think not in ("show", "hide"):
        raise UsageError(f"--think {think!r} must be show or hide", "e.g. --think hide")
    if resume and load_path:
        raise UsageError("--continue resumes the last conversation and --load a given one", "pick one")
    from ..chat import store
    from ..chat.repl import Repl
    from ..chat.session import Session
    from ..paths import state_dir
    from ..render.console import make_console
    from .common import open_source

    registry = ctx.obj.registry()
    saved = None
    if load_path:
        saved = store.load(Path(load_path))
    elif resume:
        if not store.last_path().exists():
            raise UsageError(f"there is no conversation to continue ({store.last_path()} does not exist)",
                             "start one with `llmchat chat`; it is saved when you leave")
        saved = store.load(store.last_path())
    if not sys.stdin.isatty():
        raise UsageError("chat needs a terminal on stdin", "use `llmchat ask` in pipes and scripts")
    spec = registry.get(model or (saved or {}).get("model"))
    given = dict(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                 repetition_penalty=repetition_penalty, seed=seed, max_tokens=max_tokens)
    params = sampling_params(spec, **given)
    if saved:  # the saved settings, under what this command line gives
        params = store.saved_params(saved, params, given)

    def load_model(model_spec):
        return open_source(model_spec, registry, dtype=dtype, device=device, quant=quant, download=download,
                           force=force)

    session = Session(source=load_model(spec), params=params, system=system or spec.system, view=view or "text",
                      think=think or "show")
    if saved:
        store.restore(session, saved)
        session.system = system or saved.get("system")
        session.view = view or saved.get("view") or "text"
        session.think = think or saved.get("think") or "show"
        session.notices.append(store.summary(saved))
    console = make_console()
    history = None if no_history else state_dir() / "history"
    Repl(session, console, registry=registry, load_model=load_model, history=history, autosave=store.last_path()).run()
