"""`llmchat tokenize` views: token boundaries, the table, the summary line, JSON, the comparison.

Every view shows a token as the bytes it contributes: whole characters as text, bytes that are
only part of a character as `<F0 9F>` (never as the mojibake of the vocabulary's byte alphabet).
Control characters are replaced by visible symbols before anything reaches the terminal. The
plain (pipe) views are built from strings here; rich is imported only by the TTY views.
"""

from __future__ import annotations

from typing import Any

from ..sanitize import sanitize
from ..tokenizer.pieces import Piece, Tokenized

# Background colours that alternate from token to token (dark text on light colours, like tiktokenizer).
PALETTE = ("black on #a8d8ff", "black on #ffd3a8", "black on #c4f0b0", "black on #f3bde6", "black on #fff0a0")
SPECIAL = "bold white on #7c4dce"
# rich's nearest-colour downgrade to 16 colours makes neighbours alike (two whites): pick them by hand.
PALETTE_16 = ("black on bright_cyan", "black on bright_yellow", "black on bright_green", "black on bright_magenta")
SPECIAL_16 = "bold bright_white on blue"
NO_COLOR_PALETTE = ("reverse", "")
NO_COLOR_SPECIAL = "bold underline"
WHITESPACE = {" ": "·", "\t": "→", "\n": "↵"}
# Beyond the control characters `sanitize` replaces: characters that reorder or break a line, or
# hide text, shown as escapes.
_INVISIBLE = {c: f"\\u{c:04x}" for c in (0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF, *range(0x202A, 0x202F),
                                         *range(0x2066, 0x206A))}


def escape_controls(text: str) -> str:
    """Control characters as visible symbols (␛ for ESC, ␍ for CR; tab and newline stay), bidi and
    line-separator characters as \\uXXXX."""
    return sanitize(text).translate(_INVISIBLE)


def visible(text: str, show_whitespace: bool | str, newlines: bool = True) -> str:
    """Escape controls; with show_whitespace, · for space, → for tab, ↵ for newline (followed by
    a real newline when `newlines`, so the text keeps its lines); show_whitespace="newlines"
    marks newlines only."""
    text = escape_controls(text)
    if show_whitespace == "newlines":
        text = text.replace("\n", "↵\n" if newlines else "↵")
    elif show_whitespace:
        text = "".join(WHITESPACE.get(ch, ch) + ("\n" if ch == "\n" and newlines else "") for ch in text)
    elif not newlines:
        text = text.replace("\n", "↵").replace("\t", "→")
    return text


def segments(data: bytes) -> list[tuple[str, bool]]:
    """A token's bytes as (text, False) runs of whole characters and ("<F0 9F>", True) runs of
    bytes that are only part of a character."""
    out: list[tuple[str, bool]] = []
    rest = data
    while rest:
        try:
            out.append((rest.decode("utf-8"), False))
            break
        except UnicodeDecodeError as exc:
            if exc.start:
                out.append((rest[:exc.start].decode("utf-8"), False))
            bad = rest[exc.start:exc.end]
            if out and out[-1][1]:  # one <..> group for adjacent stray bytes
                out[-1] = (out[-1][0][:-1] + " " + bad.hex(" ").upper() + ">", True)
            else:
                out.append(("<" + bad.hex(" ").upper() + ">", True))
            rest = rest[exc.end:]
    return out


def piece_label(piece: Piece, show_whitespace: bool | str = False, newlines: bool = True) -> str:
    """How a token is shown: its text made safe (see `visible`), with partial characters as <XX>."""
    return "".join(text if is_bytes else visible(text, show_whitespace, newlines)
                   for text, is_bytes in segments(piece.data))


# ---------------------------------------------------------------------------- summary and JSON

def summary(result: Tokenized) -> str:
    """'12 tokens · 40 characters · 3.33 characters/token · context 12 of 8,192 (0.1%) · …'"""
    count, chars = len(result.pieces), len(result.text)
    parts = [f"{count:,} token{'s' if count != 1 else ''}", f"{chars:,} character{'s' if chars != 1 else ''}",
             f"{chars / count:.2f} characters/token" if count else "- characters/token"]
    if result.context_length:
        parts.append(f"context {count:,} of {result.context_length:,} ({100 * count / result.context_length:.1f}%)")
    if result.bos_added:
        parts.append(f"BOS {result.pieces[0].piece} added by the tokenizer")
    if result.generation_index is not None:
        tail = count - result.generation_index
        parts.append(f"generation prompt: the last {tail} token{'s' if tail != 1 else ''}")
    parts.extend(result.notes)
    return escape_controls(" · ".join(parts))


def to_json(result: Tokenized) -> dict[str, Any]:
    """The --json object: model, text, tokens (index, id, piece, text, bytes, start, end, special),
    count, characters, context_length, bos_added (and generation_prompt_index for --chat)."""
    data: dict[str, Any] = {
        "model": result.model,
        "text": result.text,
        "tokens": [{"index": p.index, "id": p.id, "piece": p.piece, "text": p.text, "bytes": p.data.hex(),
                    "start": p.start, "end": p.end, "special": p.special} for p in result.pieces],
        "count": len(result.pieces),
        "characters": len(result.text),
        "context_length": result.context_length,
        "bos_added": result.bos_added,
    }
    if result.generation_index is not None:
        data["generation_prompt_index"] = result.generation_index
    return data


# ---------------------------------------------------------------------------- plain (pipe) views

def plain_boundaries(result: Tokenized, show_whitespace: bool | str = False) -> str:
    """The tokens separated by '|', then the summary line. No escape codes. A '|' or '\\' inside
    a text token is written '\\|' or '\\\\', so that the boundaries stay unambiguous; special
    tokens (<|im_start|>) are written whole."""
    body = "|".join(piece_label(p, show_whitespace) if p.special else
                    piece_label(p, show_whitespace).replace("\\", "\\\\").replace("|", "\\|") for p in result.pieces)
    return body + ("" if not body or body.endswith("\n") else "\n") + summary(result) + "\n"


def table_rows(result: Tokenized) -> list[list[str]]:
    """index, id, piece as stored, text, bytes, character offsets (and a note where there is one)."""
    rows = []
    for p in result.pieces:
        note = ("added by the tokenizer" if p.added else "special" if p.special else "")
        if result.generation_index is not None and p.index >= result.generation_index:
            note = (note + ", " if note else "") + "generation prompt"
        rows.append([str(p.index), str(p.id), visible(p.piece, True, newlines=False),
                     piece_label(p, True, newlines=False), p.data.hex(" ").upper(), f"{p.start}-{p.end}", note])
    return rows


TABLE_HEADER = ["#", "id", "piece", "text", "bytes", "chars", "note"]


def plain_table(result: Tokenized) -> str:
    """Aligned columns, no escape codes (cells never hold tabs or newlines)."""
    rows = table_rows(result)
    keep = 7 if any(row[6] for row in rows) else 6
    rows = [row[:keep] for row in [TABLE_HEADER, *rows]]
    widths = [max(_width(row[i]) for row in rows) for i in range(keep)]
    right = {0, 1}
    lines = ["  ".join(cell.rjust(widths[i] - _width(cell) + len(cell)) if i in right else
                       cell + " " * (widths[i] - _width(cell)) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines) + "\n" + summary(result) + "\n"


def plain_compare(results: list[Tokenized], show_whitespace: bool | str = False) -> str:
    lines = [compare_rows_text(results), ""]
    for result in results:
        lines.append(f"== {escape_controls(result.model)} ==")
        lines.append(plain_boundaries(result, show_whitespace))
    return "\n".join(lines)


def compare_rows(results: list[Tokenized]) -> list[list[str]]:
    return [[escape_controls(r.model), f"{len(r.pieces):,}",
             f"{len(r.text) / len(r.pieces):.2f}" if r.pieces else "-",
             f"{len(r.pieces):,} of {r.context_length:,}"] for r in results]


def compare_rows_text(results: list[Tokenized]) -> str:
    rows = [["model", "tokens", "characters/token", "context"], *compare_rows(results)]
    widths = [max(_width(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
                     .rstrip() for row in rows)


def _width(text: str) -> int:
    """Terminal cells, counting East Asian wide characters and emoji as two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


# ---------------------------------------------------------------------------- rich (TTY) views

def boundary_text(result: Tokenized, show_whitespace: bool | str = False, color_system: str | None = "truecolor"):
    """The text with alternating backgrounds per token; special tokens stand out; the generation
    prompt is underlined; partial-character bytes are italic. color_system None: no colours."""
    from rich.text import Text

    palette, special = ((NO_COLOR_PALETTE, NO_COLOR_SPECIAL) if color_system is None else
                        (PALETTE_16, SPECIAL_16) if color_system in ("standard", "windows") else (PALETTE, SPECIAL))
    text = Text()
    for p in result.pieces:
        style = special if p.special else palette[p.index % len(palette)]
        if result.generation_index is not None and p.index >= result.generation_index:
            style += " underline"
        for chunk, is_bytes in segments(p.data):
            text.append(chunk if is_bytes else visible(chunk, show_whitespace), style + (" italic" if is_bytes else ""))
    return text


def print_view(console, result: Tokenized, show_whitespace: bool | str = False) -> None:
    from rich.text import Text

    body = boundary_text(result, show_whitespace, None if console.no_color else console.color_system)
    if body.plain:
        console.print(body, soft_wrap=True, end="" if body.plain.endswith("\n") else "\n")
    console.print(Text(summary(result), style="dim"), soft_wrap=True)


def print_table(console, result: Tokenized) -> None:
    from rich.table import Table
    from rich.text import Text

    rows = table_rows(result)
    keep = 7 if any(row[6] for row in rows) else 6
    table = Table(box=None, pad_edge=False, header_style="bold")
    for i, name in enumerate(TABLE_HEADER[:keep]):
        table.add_column(name, justify="right" if i < 2 else "left", overflow="fold", no_wrap=i < 2)
    for p, row in zip(result.pieces, rows):
        style = (None if console.no_color or not p.special else
                 SPECIAL_16 if console.color_system in ("standard", "windows") else SPECIAL)
        table.add_row(*[Text(cell, style=style if i == 3 else None) for i, cell in enumerate(row[:keep])])
    console.print(table)
    console.print(Text(summary(result), style="dim"), soft_wrap=True)


def print_compare(console, results: list[Tokenized], show_whitespace: bool | str = False) -> None:
    from rich.rule import Rule
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for i, name in enumerate(("model", "tokens", "characters/token", "context")):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in compare_rows(results):
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
    for result in results:
        console.print(Rule(Text(escape_controls(result.model)), align="left", style="dim"))
        print_view(console, result, show_whitespace)
