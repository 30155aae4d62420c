"""`llmchat score` and `/score`: a scored text as a heatmap, a table or a summary line.

Two colourings: by probability (the viridis scale of the probs view) or by rank bucket (GLTR's:
the model's first choice, its top 10, top 100, or beyond). Without colour (NO_COLOR, TERM=dumb,
a pipe) the text is written plain with an inline marker `[p% #rank]` after every token outside
the top 10, and the legend says so in words.
"""

from __future__ import annotations

import math

from ..engine.score import BUCKETS, Score, ScoredToken
from ..sanitize import sanitize
from .next_view import visible
from .styles import legend_segments, prob_style

BY = ("prob", "rank")
BUCKET_STYLES = {"top-1": "#000000 on #9be59b", "top-10": "#000000 on #ffe97a", "top-100": "#000000 on #ffa95e",
                 "beyond": "#ffffff on #a4309c"}
MARK_BEYOND = 10  # the plain fallback marks tokens ranked below this


def _pct(p: float) -> str:
    if math.isnan(p):
        return "-"
    return f"{100 * p:.1f}%" if p >= 0.001 else f"{100 * p:.2g}%"


def token_text(t: ScoredToken) -> str:
    return t.event.text if not t.event.is_special else t.event.piece


def style(t: ScoredToken, by: str, system: str | None = "truecolor") -> str:
    return prob_style(t.event.prob, system) if by == "prob" else BUCKET_STYLES[t.bucket]


def heatmap(console, result: Score, by: str = "rank", context: str = "") -> None:
    """The text, each token coloured; plain with inline markers when the console has no colour.
    `context`: text given before the scored tokens (a first token without BOS), shown dim."""
    from rich.text import Text

    colour = console.is_terminal and not console.no_color and console.color_system is not None
    line = Text()
    line.append(sanitize(context), style="dim" if colour else "")
    for t in result.tokens:
        text = sanitize(token_text(t))
        if colour:
            line.append(text, style=style(t, by, str(console.color_system)))
        else:
            line.append(text)
            if t.rank > MARK_BEYOND:
                line.append(f"[{_pct(t.event.prob)} #{t.rank}]")
    console.print(line, soft_wrap=not colour)
    console.print(legend(by, colour, bool(context)), soft_wrap=not colour)


def legend(by: str, colour: bool, context: bool = False):
    from rich.text import Text

    if not colour:
        return Text(f"[p% #rank] follows each token the model did not rank in its top {MARK_BEYOND}: "
                    "its probability and rank" + ("; the first token has no context and is not scored" if context else ""))
    line = Text()
    line.append("dim: context, not scored · " if context else "", style="dim")
    if by == "prob":
        line.append("token probability ", style="dim")
        for label, band_style in legend_segments("truecolor"):
            line.append(label, style=band_style)
    else:
        line.append("rank of the token among the model's choices ", style="dim")
        for _, name in BUCKETS:
            line.append(f" {name} ", style=BUCKET_STYLES[name])
    return line


def summary(result: Score, n: int = 5) -> str:
    """One line: tokens, mean NLL, perplexity, the share in each rank bucket, the most surprising."""
    shares = " · ".join(f"{name} {100 * share:.0f}%" for name, share in result.shares().items())
    worst = ", ".join(f"{visible(token_text(t))!s} (#{t.event.index}, {_pct(t.event.prob)}, rank {t.rank})"
                      for t in result.most_surprising(n))
    windows = f" · {result.windows} windows" if result.windows > 1 else ""
    return sanitize(f"{len(result.tokens)} tokens scored · mean NLL {result.nll:.3f} nats · perplexity "
                    f"{result.perplexity:.2f} · {shares}{windows} · most surprising: {worst}")


def summary_record(result: Score, n: int = 5) -> dict:
    return {"tokens": len(result.tokens), "mean_nll": result.nll, "perplexity": result.perplexity,
            "buckets": result.shares(), "windows": result.windows,
            "most_surprising": [{"index": t.event.index, "text": token_text(t), "prob": t.event.prob, "rank": t.rank}
                                for t in result.most_surprising(n)]}


def table(console, result: Score) -> None:
    """One row per token: index, token, probability, rank, entropy, top alternatives."""
    from rich.table import Table
    from rich.text import Text

    colour = console.is_terminal and not console.no_color
    if not console.is_terminal:
        console.width = 100_000  # a pipe gets whole rows, never wrapped
    grid = Table(box=None, pad_edge=False, header_style="bold" if colour else "")
    for name, justify in (("#", "right"), ("token", "left"), ("prob", "right"), ("rank", "right"),
                          ("entropy", "right"), ("top alternatives", "left")):
        grid.add_column(name, justify=justify, no_wrap=name != "top alternatives", overflow="fold")
    for t in result.tokens:
        e = t.event
        alts = "  ".join(f"{_alt(a.piece)} {_pct(a.prob)}" for a in e.alternatives)
        grid.add_row(str(e.index), Text(visible(token_text(t)), style=style(t, "rank") if colour else ""),
                     _pct(e.prob), str(t.rank), f"{e.entropy:.2f}", alts)
    if console.is_terminal:
        console.print(grid)
        return
    with console.capture() as captured:
        console.print(grid)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))  # no padding in pipes


def _alt(piece: str) -> str:
    from .chat_view import shown

    return shown(piece)
