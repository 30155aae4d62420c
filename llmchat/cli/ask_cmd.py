"""`llmchat ask` — one prompt in, the answer out: for shell scripts and pipes."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from . import app
from ..errors import Interrupted, UsageError
from .common import (DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, FORCE_OPTION, MAX_TOKENS_OPTION, MIN_P_OPTION,
                     MODEL_OPTION, QUANT_OPTION, REPETITION_OPTION, TEMPERATURE_OPTION, TOP_K_OPTION, TOP_P_OPTION,
                     sampling_params)
from .inputs import gather_parts

VIEW_HELP = "On a terminal: text, tokens (boundaries) or probs (colour by probability)."


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def ask(
    ctx: typer.Context,
    prompt: Optional[str] = typer.Argument(None, help="The prompt ('-' reads stdin). Piped stdin comes first."),
    model: Optional[str] = MODEL_OPTION,
    file: List[str] = typer.Option([], "-f", "--file", help="Add a file's contents to the prompt (repeatable)."),
    system: Optional[str] = typer.Option(None, "-s", "--system", help="System prompt."),
    temperature: Optional[float] = TEMPERATURE_OPTION,
    top_p: Optional[float] = TOP_P_OPTION,
    top_k: Optional[int] = TOP_K_OPTION,
    min_p: Optional[float] = MIN_P_OPTION,
    repetition_penalty: Optional[float] = REPETITION_OPTION,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling (default: random, reported by -v/--json)."),
    max_tokens: Optional[int] = MAX_TOKENS_OPTION,
    stop: List[str] = typer.Option([], "--stop", help="Stop at this string (repeatable; not printed)."),
    raw: bool = typer.Option(False, "--raw", help="No chat template: plain completion (base models)."),
    hide_thinking: bool = typer.Option(False, "--hide-thinking", help="Do not show a reasoning model's thinking."),
    thinking_to_stderr: bool = typer.Option(False, "--thinking-to-stderr", help="Thinking to stderr (default for pipes)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Stats line on stderr."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object with answer, thinking, settings and stats."),
    logprobs: int = typer.Option(0, "--logprobs", metavar="K", help="With --json/--jsonl: per-token data with top-K alternatives."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Batch: each stdin line is a prompt; one JSON line out per line."),
    view: str = typer.Option("text", "--view", help=VIEW_HELP),
    truncate: bool = typer.Option(False, "--truncate", help="Drop the oldest part of a prompt that does not fit."),
    input_errors: str = typer.Option("strict", "--input-errors", help="strict or replace: non-UTF-8 input."),
    raw_output: bool = typer.Option(False, "--raw-output", help="Pipes only: write the model's exact bytes (unsafe for terminals)."),
    dtype: Optional[str] = DTYPE_OPTION,
    quant: Optional[str] = QUANT_OPTION,
    device: Optional[str] = DEVICE_OPTION,
    download: bool = DOWNLOAD_OPTION,
    force: bool = FORCE_OPTION,
    no_server: bool = typer.Option(False, "--no-server", help="Do not use a running `llmchat serve`; load in-process."),
    server_wait: Optional[float] = typer.Option(None, "--server-wait", metavar="SECONDS",
                                                help="Wait at most this long for a busy server (default: for ever)."),
    if_busy: str = typer.Option("load", "--if-busy", metavar="load|fail",
                                help="After --server-wait: load the model in-process, or fail (exit 1)."),
    keep_alive: bool = typer.Option(False, "--keep-alive",
                                    help="Start a background server (idle timeout 600 s) for later asks."),
) -> None:
    """Answer one prompt; the answer streams to stdout, everything else goes to stderr."""
    from ..render.styles import VIEWS

    if view not in VIEWS:
        raise UsageError(f"--view {view!r} is not one of {', '.join(VIEWS)}", "e.g. --view probs")
    if input_errors not in ("strict", "replace"):
        raise UsageError(f"--input-errors {input_errors!r} must be strict or replace", "use --input-errors replace")
    if raw_output and sys.stdout.isatty():
        raise UsageError("--raw-output writes unfiltered model bytes and is for pipes only", "pipe the output or drop --raw-output")
    if logprobs < 0:
        raise UsageError("--logprobs must be ≥ 0", "e.g. --logprobs 5")
    if if_busy not in ("load", "fail"):
        raise UsageError(f"--if-busy {if_busy!r} must be load or fail", "e.g. --if-busy fail")
    if server_wait is not None and not server_wait >= 0:
        raise UsageError("--server-wait must be ≥ 0 seconds", "e.g. --server-wait 10")
    if logprobs and not (as_json or jsonl):
        raise UsageError("--logprobs adds per-token data to the JSON output", "add --json (or --jsonl)")
    if raw and system is not None:
        raise UsageError("--raw sends the text as it is, so a system prompt would be dropped",
                         "drop -s, or drop --raw to use the chat template")
    if hide_thinking and thinking_to_stderr:
        raise UsageError("--hide-thinking and --thinking-to-stderr contradict each other", "pick one")
    if jsonl and (prompt or file or as_json):
        raise UsageError("--jsonl reads prompts from stdin, one per line", "drop the prompt argument, -f and --json")
    spec = ctx.obj.registry().get(model)
    params = sampling_params(spec, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                             repetition_penalty=repetition_penalty, seed=seed, max_tokens=max_tokens, stop=stop)
    parts = None if jsonl else gather_parts(prompt, file, input_errors)
    text = parts.text if parts else None
    options = dict(system=system, raw=raw, truncate=truncate, as_json=as_json, logprobs=logprobs, view=view,
                   verbose=verbose, hide_thinking=hide_thinking, thinking_to_stderr=thinking_to_stderr,
                   raw_output=raw_output, keep=parts.keep if parts else 0)
    if not jsonl and not no_server and spec.source != "remote" and _answer_remote(spec, text, params, options, dtype=dtype, quant=quant, device=device,
                                                      wait=server_wait, if_busy=if_busy):
        return
    if keep_alive:
        from ..serve.client import spawn_server

        spawn_server(ctx.obj.models_path, model, dtype=dtype, quant=quant, device=device, spec=spec)
    from ..render.answer import answer_once
    from .common import open_source

    source = open_source(spec, ctx.obj.registry(), reuse=False, dtype=dtype, device=device, quant=quant,
                         download=download, force=force)
    if jsonl:
        from .batch import run_batch

        raise typer.Exit(run_batch(source, params, system=system, raw=raw, logprobs=logprobs, truncate=truncate,
                                   input_errors=input_errors))
    finished = answer_once(source, text, params, **options)
    if finished.reason == "interrupted":
        raise Interrupted("interrupted")


def _answer_remote(spec, text, params, options, *, dtype, quant, device, wait=None, if_busy="load") -> bool:
    """Answer through a live `llmchat serve` for this model and load options; False when there is
    none (or it went away before answering) and the caller should load the model itself."""
    from ..render.answer import answer_once
    from ..errors import LlmchatError
    from ..serve.client import ServerBusy, ServerGone, find_server

    def waiting() -> None:
        print("llmchat: waiting for the server (busy with another request)", file=sys.stderr, flush=True)

    try:
        remote = find_server(spec, dtype=dtype, quant=quant, device=device, wait=wait, on_wait=waiting)
    except ServerBusy as exc:
        if if_busy == "fail":
            raise LlmchatError(f"the server for {spec.alias} was still busy after {exc.waited:.0f} s",
                               "wait longer (--server-wait), load in-process (--if-busy load or --no-server)") from None
        print(f"llmchat: note: the server stayed busy for {exc.waited:.0f} s; loading {spec.alias} in-process",
              file=sys.stderr, flush=True)
        return False
    if remote is None:
        return False
    try:
        finished = answer_once(remote, text, params, **options)
    except ServerGone:
        return False
    finally:
        remote.close()
    if finished.reason == "interrupted":
        raise Interrupted("interrupted")
    return True
