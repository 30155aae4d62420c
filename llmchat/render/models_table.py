"""`llmchat models` and `llmchat models show` as rich tables."""

from __future__ import annotations

from typing import Any


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def models_table(console, rows: list[dict[str, Any]], user_file: str = "~/.config/llmchat/models.toml") -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("alias", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("available here", overflow="fold")
    for row in rows:
        alias = Text(row["alias"] + (" *" if row["default"] else ""))
        available = Text(("yes: " if row["available"] else "no: ") + row["why"],
                         style="green" if row["available"] else "yellow")
        table.add_row(alias, Text(row["source"]), Text(row["family"] or "-"), Text(human_size(row["size"])), available)
    console.print(table)
    console.print(Text("* default · details: llmchat models show ALIAS · fetch a repo: hf download OWNER/NAME "
                       f"(or --download) · add models in {user_file}", style="dim"))


def model_details(console, info: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    order = ["alias", "description", "architecture", "family", "parameters", "layers", "hidden_size", "heads",
             "kv_heads", "context_length", "vocab_size", "stored_dtype", "dtype", "quant", "device", "chat_template",
             "thinking", "eos_ids", "special_tokens", "source", "location", "gguf_file", "transformers_folder",
             "weights_converted", "engine", "served_model", "served", "max_alternatives", "probabilities",
             "token_ids", "server_template", "server_tokenize", "tokenizer", "api_key_env", "notes"]
    for key in order:
        if key not in info:
            continue
        value = info[key]
        if key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f} M)" if value else "-"
        elif key in ("eos_ids", "special_tokens"):
            value = ", ".join(f"{t['id']} {t['token']!r}" for t in value) or "-"
        table.add_row(Text(key.replace("_", " ")), Text(str(value)))
    console.print(table)
