"""`llmchat next` — what does the model think comes next? The next-token distribution."""

from __future__ import annotations

import math
from typing import Optional

import typer

from . import app
from ..errors import UsageError
from .inputs import gather_prompt
from .common import DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, FORCE_OPTION, MODEL_OPTION, QUANT_OPTION


@app.command("next", context_settings={"help_option_names": ["-h", "--help"]})
def next_token(
    ctx: typer.Context,
    prompt: Optional[str] = typer.Argument(None, help="The text so far ('-' or piped stdin works too)."),
    model: Optional[str] = MODEL_OPTION,
    top: int = typer.Option(10, "-k", "--top", help="How many tokens to list."),
    chat: bool = typer.Option(False, "--chat", help="Apply the chat template (the text is the user turn)."),
    system: Optional[str] = typer.Option(None, "-s", "--system", help="System prompt (with --chat)."),
    after: Optional[str] = typer.Option(None, "--after", help="Force-feed this text, then show the distribution."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    input_errors: str = typer.Option("strict", "--input-errors", help="strict or replace: non-UTF-8 input."),
    dtype: Optional[str] = DTYPE_OPTION,
    quant: Optional[str] = QUANT_OPTION,
    device: Optional[str] = DEVICE_OPTION,
    download: bool = DOWNLOAD_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Show the top-K next tokens with probability, bar, cumulative probability and entropy."""
    if top < 1:
        raise UsageError("--top must be ≥ 1", "e.g. --top 10")
    if input_errors not in ("strict", "replace"):
        raise UsageError(f"--input-errors {input_errors!r} must be strict or replace", "use --input-errors replace")
    spec = ctx.obj.registry().get(model)
    text = gather_prompt(prompt, [], input_errors, has_files=False)
    from ..prompt.build import build
    from .common import open_source

    source = open_source(spec, ctx.obj.registry(), reuse=False, dtype=dtype, device=device, quant=quant,
                         download=download, force=force)
    ids = list(build(source, text, system=system, raw=not chat).ids)
    if after:
        ids += source.tokenizer.encode(after, add_special_tokens=False)
    dist = source.next_distribution(ids, top)
    rows = []
    cumulative = 0.0
    for rank, alt in enumerate(dist.top, start=1):
        cumulative += alt.prob
        rows.append({"rank": rank, "id": alt.id, "piece": alt.piece,
                     "text": source.tokenizer.decode([alt.id], skip_special_tokens=False),
                     "prob": alt.prob, "logprob": math.log(alt.prob) if alt.prob > 0 else None, "cumulative": cumulative})
    if as_json:
        from ..engine.codec import dumps

        print(dumps({"model": spec.alias, "prompt": text, "after": after, "chat": chat, "prompt_tokens": len(ids),
                     "entropy_nats": dist.entropy, "entropy_bits": dist.entropy / math.log(2), "top": rows}, indent=2))
        return
    from ..render.console import make_console
    from ..render.next_view import distribution_table

    distribution_table(make_console(), rows, dist, context=(text + (after or ""))[-60:])
