"""The next-token distribution as a table with bars."""

from __future__ import annotations

import math

from ..sanitize import sanitize


def visible(text: str) -> str:
    """Token text with its whitespace made visible: ␣ for space, ↵ newline, → tab."""
    return sanitize(text.replace(" ", "␣").replace("\n", "↵").replace("\t", "→"))


def distribution_table(console, rows: list[dict], dist, context: str, width: int = 30) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(Text("after: ", style="dim") + Text("…" + visible(context)))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (("#", "right"), ("token", "left"), ("id", "right"), ("prob", "right"), ("", "left"),
                          ("cum", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for row in rows:
        bar = "█" * int(round(row["prob"] * width))
        table.add_row(str(row["rank"]), Text(visible(row["text"]) or visible(row["piece"]), style="bold"), str(row["id"]),
                      f"{100 * row['prob']:.1f}%", Text(bar, style="cyan"), f"{100 * row['cumulative']:.1f}%")
    console.print(table)
    console.print(Text(f"entropy {dist.entropy:.2f} nats ({dist.entropy / math.log(2):.2f} bits) over the whole "
                       f"vocabulary · the top {len(rows)} hold {100 * rows[-1]['cumulative']:.1f}%", style="dim"))
