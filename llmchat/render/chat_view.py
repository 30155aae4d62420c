"""Rendering a chat in the terminal: streamed answers in three views, thinking, tables.

Long answers never live inside one big `rich.live.Live`: finished Markdown blocks are printed to
the scrollback as they complete and only the unfinished tail is repainted (the approach of
transformers' chat display), so an answer longer than the screen neither freezes nor truncates.
"""

from __future__ import annotations

import math
import time

from ..engine.events import TokenEvent
from ..prompt.thinking import ANSWER
from ..sanitize import sanitize
from ..tokenizer.pieces import byte_decoder
from .next_view import visible
from .styles import boundary_style, colour_system, mark_pieces, prob_style, token_style


class MarkdownStream:
    """Markdown drawn one way however long the answer: the stable part (up to the last complete
    block, or every full line when the tail is taller than the screen) is rendered as ONE Markdown
    document and only its new lines are printed to the scrollback; the unfinished tail is repainted
    in a transient Live, at most REPAINT_HZ times a second (parsing and painting the tail at every
    token capped a 120 tok/s model at ~80 on screen). Single newlines the model wrote are kept
    (hard breaks): poems, addresses and lists keep their lines."""

    REPAINT_HZ = 30

    def __init__(self, console):
        self.console = console
        self.text = ""
        self.stable = 0  # characters of `text` committed to the scrollback
        self.base = 0  # where the document being rendered starts (moves on when the width changes)
        self.width = console.width
        self.printed = 0  # lines of that document's rendering already printed
        self.live = None
        self._painted = 0.0

    def _markdown(self, text: str):
        from rich.markdown import Markdown

        return Markdown(hard_breaks(sanitize(text)), hyperlinks=False)

    def _lines(self, text: str) -> list[str]:
        with self.console.capture() as captured:
            self.console.print(self._markdown(text))
        return captured.get().split("\n")[:-1]

    def _commit(self, upto: int) -> None:
        self._stop_live()
        if self.console.width != self.width:  # resized: what is printed stays, the rest takes the new width
            self.width, self.base, self.printed = self.console.width, self.stable, 0
        self.stable = upto
        document = self.text[self.base:upto]
        lines = self._lines(document) if document.strip() else []
        new = lines[self.printed:]
        if new:
            self.console.file.write("".join(line + "\n" for line in new))
            self.console.file.flush()
        self.printed = max(self.printed, len(lines))

    def feed(self, text: str) -> None:
        self.text += text
        cut = _block_boundary(self.text)
        if self.text[cut:].count("\n") > max(4, self.console.height - 4):  # taller than the screen
            cut = self.text.rfind("\n") + 1
        if cut > self.stable:
            self._commit(cut)
        tail = self.text[self.stable:]
        now = time.monotonic()
        if tail.strip() and (self.live is None or now - self._painted >= 1 / self.REPAINT_HZ):
            self._live().update(self._markdown(tail), refresh=True)
            self._painted = now

    def _live(self):
        if self.live is None:
            from rich.live import Live

            self.live = Live(console=self.console, transient=True, auto_refresh=False, vertical_overflow="visible")
            self.live.start()
        return self.live

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def close(self) -> None:
        self._commit(len(self.text))


def hard_breaks(text: str) -> str:
    """Every newline inside a paragraph becomes a Markdown hard break (two spaces), outside code
    fences: the model's line structure survives rendering."""
    out, fence = [], False
    lines = text.split("\n")
    for n, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        nxt = lines[n + 1] if n + 1 < len(lines) else ""
        if not fence and line.strip() and nxt.strip() and not line.endswith("  "):
            line += "  "
        out.append(line)
    return "\n".join(out)


def _block_boundary(text: str) -> int:
    """End of the last complete Markdown block (a blank line outside a code fence), or 0."""
    cut, fence = 0, False
    position = 0
    for line in text.splitlines(keepends=True):
        position += len(line)
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and line.strip() == "" and line.endswith("\n") and position < len(text) + 1:
            cut = position
    return cut


class ThinkingPane:
    """Reasoning streamed dimmed under a header (last lines only), collapsed to one line when done."""

    def __init__(self, console, show: bool):
        self.console, self.show = console, show
        self.text, self.tokens, self.started = "", 0, time.perf_counter()
        self.live = None
        self._painted = 0.0

    def feed(self, text: str) -> None:
        from rich.live import Live
        from rich.text import Text

        self.text += text
        now = time.monotonic()
        if self.live is None:
            self.live = Live(console=self.console, transient=True, auto_refresh=False)
            self.live.start()
        elif now - self._painted < 1 / MarkdownStream.REPAINT_HZ:
            return
        self._painted = now
        if self.show:
            tail = "\n".join(self.text.splitlines()[-8:])
            body = Text("thinking…\n", style="dim italic") + Text(sanitize(tail), style="dim")
        else:
            body = Text(f"thinking… {len(self.text)} characters", style="dim italic")
        self.live.update(body, refresh=True)

    def count(self) -> None:
        self.tokens += 1

    def close(self) -> None:
        from rich.text import Text

        if self.live is None:
            return
        self.live.stop()
        self.live = None
        seconds = time.perf_counter() - self.started
        self.console.print(Text(f"▸ thought for {self.tokens} tokens, {seconds:.1f}s", style="dim italic"))


class AnswerView:
    """One answer as it streams, in the session's view. The session splits the answer into
    thinking and answer (prompt/thinking.py); each event comes with its pieces and the channel the
    split is in after it."""

    def __init__(self, console, view: str, think: str):
        self.console, self.view = console, view
        self.markdown = MarkdownStream(console) if view == "text" else None
        self.thinking = ThinkingPane(console, think == "show")
        self.column_zero = True

    def event(self, event: TokenEvent, pieces: list[tuple[str, str]], channel: str) -> None:
        system = colour_system(self.console)
        style = token_style(self.view, event, system)
        if system is None and self.view != "text":
            pieces = mark_pieces(self.view, event, pieces)
        if channel != ANSWER and not pieces:
            self.thinking.count()
        for channel, text in pieces:
            if channel == ANSWER:
                self.thinking.close()
                self._answer(text, style)
            else:
                self.thinking.count()
                self.thinking.feed(text)

    def _answer(self, text: str, style: str | None) -> None:
        if self.markdown is not None:
            self.markdown.feed(text)
            return
        from rich.text import Text

        self.console.print(Text(sanitize(text), style=style or ""), end="", soft_wrap=True)
        self.column_zero = text.endswith("\n")

    def close(self, pieces: list[tuple[str, str]]) -> None:
        for channel, text in pieces:
            if channel == ANSWER:
                self._answer(text, None)
            else:
                self.thinking.feed(text)
        self.thinking.close()
        if self.markdown is not None:
            self.markdown.close()
        elif not self.column_zero:
            self.console.print()


def inspect_table(console, events: list[TokenEvent]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (("#", "right"), ("token", "left"), ("prob", "right"), ("entropy", "right"),
                          ("top alternatives", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "top alternatives", overflow="fold")
    for e in events:
        alts = Text()
        for n, a in enumerate(e.alternatives):
            alts.append(f"{n}:", style="dim")
            alts.append(shown(a.piece) + f" {_pct(a.prob)}  ", style="bold" if _same(a, e) else "")
        table.add_row(str(e.index), Text(shown(e.piece) if not e.text else visible(e.text), style=prob_style(e.prob, colour_system(console)) if not math.isnan(e.prob) and colour_system(console) else ""),
                      _pct(e.prob), f"{e.entropy:.2f}" if not math.isnan(e.entropy) else "-", alts)
    console.print(table)
    console.print(Text("prob: model distribution (after penalties, before temperature/top-p) · entropy in nats · "
                       "/inspect N zooms in · /branch N ALT", style="dim"))


def _same(alternative, event: TokenEvent) -> bool:
    """Is this alternative the chosen token? By id; by text on a text-level server (no ids)."""
    return alternative.id == event.id if event.id >= 0 else alternative.piece == event.piece


def inspect_one(console, event: TokenEvent, width: int = 30) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"token {event.index}: ", style="bold") + Text(visible(event.text) if event.text else shown(event.piece))
                  + Text(f"  id {event.id if event.id >= 0 else '- (text level)'} · piece {sanitize(repr(event.piece))} · bytes {event.bytes.hex(' ') or '-'} · "
                         f"prob {_pct(event.prob)} · sampled with prob {_pct(event.sample_prob)} · "
                         + (f"entropy {event.entropy:.2f} nats" if not math.isnan(event.entropy) else
                            "entropy - (the engine sends only the top K)"), style="dim"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("alt", "token", "prob", ""):
        table.add_column(name, no_wrap=True)
    for n, a in enumerate(event.alternatives):
        mark = " ◂ chosen" if _same(a, event) else ""
        table.add_row(str(n), Text(shown(a.piece)), _pct(a.prob),
                      Text("█" * int(round(a.prob * width)), style="cyan") + Text(mark, style="bold"))
    console.print(table)


def _piece_bytes(piece: str) -> bytes:
    table = byte_decoder()
    if piece and all(ch in table for ch in piece):
        return bytes(table[ch] for ch in piece)
    return piece.replace("\u2581", " ").encode("utf-8")


def _piece_text(piece: str) -> str:
    return _piece_bytes(piece).decode("utf-8", "replace")


def shown(piece: str) -> str:
    """A token piece as `tokenize` shows it: whitespace visible, bytes that are only part of a
    character as <F0 9F>."""
    from .tokenize_view import segments

    return "".join(text if partial else visible(text) for text, partial in segments(_piece_bytes(piece)))


def _pct(p: float) -> str:
    return "-" if p is None or math.isnan(p) else f"{100 * p:.1f}%"


def conversation_tokens(console, tokenizer, ids: list[int], context: int) -> None:
    """The conversation as the model sees it: token boundaries, special tokens highlighted."""
    from rich.text import Text

    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    line = Text()
    for n, (i, piece) in enumerate(zip(ids, pieces)):
        if i in special:
            line.append(sanitize(piece), style="bold #ffffff on #8b1a89")
            continue
        text = _piece_text(piece)
        shown = sanitize(text.replace("\n", "↵\n").replace("\t", "→"))
        system = colour_system(console)
        if system is None and n:
            line.append("|")  # no colour: the boundary as a mark
        line.append(shown, style=boundary_style(n, system) if system else "")
    console.print(line)
    console.print(Text(f"{len(ids)} tokens of {context}: the conversation plus the generation prompt the next turn "
                       "adds (the status bar counts the conversation alone) · special tokens in purple · the model "
                       "reads exactly this", style="dim"))
