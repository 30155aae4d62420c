"""`llmchat score` — how surprising is this text to the model? Probability and rank of every token."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import app
from ..errors import UsageError
from .common import DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, FORCE_OPTION, MODEL_OPTION, QUANT_OPTION
from .inputs import gather_prompt


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def score(
    ctx: typer.Context,
    text: Optional[str] = typer.Argument(None, help="The text to score ('-' or piped stdin works too)."),
    model: Optional[str] = MODEL_OPTION,
    file: List[str] = typer.Option([], "-f", "--file", help="Add a file's contents to the text (repeatable)."),
    chat: bool = typer.Option(False, "--chat", help="Score the text as the assistant's answer to --prompt."),
    question: Optional[str] = typer.Option(None, "--prompt", metavar="Q", help="With --chat: the user's message."),
    system: Optional[str] = typer.Option(None, "-s", "--system", help="With --chat: a system prompt."),
    by: str = typer.Option("rank", "--by", help="Colour by rank (GLTR buckets: top-1/10/100/beyond) or prob."),
    as_table: bool = typer.Option(False, "--table", help="One row per token: prob, rank, entropy, alternatives."),
    as_json: bool = typer.Option(False, "--json", help="Per-token records (as ask --json --logprobs, plus rank)."),
    top: int = typer.Option(5, "-k", "--top", help="Alternatives kept per token (table and JSON)."),
    window: Optional[int] = typer.Option(None, "--window", metavar="N",
                                         help="Tokens the model sees at once (default: its context); longer texts "
                                              "are scored in windows overlapping by half."),
    input_errors: str = typer.Option("strict", "--input-errors", help="strict or replace: non-UTF-8 input."),
    dtype: Optional[str] = DTYPE_OPTION,
    quant: Optional[str] = QUANT_OPTION,
    device: Optional[str] = DEVICE_OPTION,
    download: bool = DOWNLOAD_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Score a text token by token: probability, rank, entropy; perplexity and the surprising tokens."""
    from ..render.score_view import BY

    if by not in BY:
        raise UsageError(f"--by {by!r} is not one of {', '.join(BY)}", "e.g. --by prob")
    if top < 0:
        raise UsageError("--top must be ≥ 0", "e.g. --top 5")
    if window is not None and window < 2:
        raise UsageError("--window must be at least 2 tokens", "e.g. --window 512")
    if input_errors not in ("strict", "replace"):
        raise UsageError(f"--input-errors {input_errors!r} must be strict or replace", "use --input-errors replace")
    if (question is not None or system is not None) and not chat:
        raise UsageError("--prompt and --system describe a chat", "add --chat to score the text as an answer")
    spec = ctx.obj.registry().get(model)
    body = gather_prompt(text, file, input_errors)
    from ..prompt.build import score_ids
    from ..render.progress import terminal_progress
    from .common import open_source

    progress = terminal_progress()
    source = open_source(spec, ctx.obj.registry(), reuse=False, dtype=dtype, device=device, quant=quant,
                         download=download, force=force, progress=progress)
    ids, start = score_ids(source, body, chat=chat, question=question, system=system)
    result = source.score(ids, start, alternatives=top, window=window, progress=progress)
    from ..render import score_view

    if as_json:
        from ..engine.codec import dumps, score_to_dict

        print(dumps({"model": spec.alias, "weights": source.weights, "backend": source.backend, "chat": chat,
                     "prompt": question, "system": system, "text": body, **score_to_dict(result),
                     "summary": score_view.summary_record(result)}, indent=2))
        return
    from ..render.console import make_console

    console = make_console()
    if as_table:
        score_view.table(console, result)
    else:
        context = "" if chat else source.tokenizer.decode(ids[:start], skip_special_tokens=True)
        score_view.heatmap(console, result, by, context)
    print(score_view.summary(result))
