"""Streaming output of an answer: plain for pipes, styled per token for terminals.

One `AnswerWriter` per answer. It receives each TokenEvent with its (channel, text) pieces (split
once by prompt/thinking.py), and writes: answer text to `out`, reasoning to `think_out` (or
nowhere). Every piece of model text is passed through `sanitize` unless raw output was asked for
(pipes only).
"""

from __future__ import annotations

from typing import TextIO

from ..engine.events import TokenEvent
from ..prompt.thinking import ANSWER
from ..sanitize import sanitize
from .styles import colour_system, mark_pieces, token_style


class Sink:
    """Plain text to a stream, flushed at every write (a pipe reader sees tokens as they come)."""

    def __init__(self, stream: TextIO, raw: bool = False):
        self.stream, self.raw = stream, raw

    def write(self, text: str, style: str | None = None) -> None:
        self.stream.write(text if self.raw else sanitize(text))
        self.stream.flush()


class RichSink(Sink):
    """Styled text to a terminal through a rich Console (markup off: model text stays literal)."""

    def __init__(self, console):
        super().__init__(console.file)
        self.console = console

    def write(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        self.console.print(Text(sanitize(text), style=style or ""), end="", soft_wrap=True)
        self.console.file.flush()


class AnswerWriter:
    def __init__(self, out: Sink, think_out: Sink | None, *, view: str = "text"):
        self.out, self.think_out, self.view = out, think_out, view
        # a terminal without colour (NO_COLOR, TERM=dumb) shows the view as text marks
        self.system = colour_system(out.console) if isinstance(out, RichSink) else "truecolor"
        self._wrote_answer = False
        self._think_header = False
        self._ends_with_newline = True

    def event(self, event: TokenEvent, pieces: list[tuple[str, str]]) -> None:
        if self.system is None and self.view != "text":
            pieces = mark_pieces(self.view, event, pieces)
        self._write(pieces, token_style(self.view, event, self.system))

    def finish(self, pieces: list[tuple[str, str]]) -> None:
        self._write(pieces, None)

    def _write(self, pieces, style) -> None:
        for channel, text in pieces:
            if channel == ANSWER:
                if self._think_header and self.think_out is not None and self.think_out.stream is self.out.stream:
                    self._close_thinking()
                self._wrote_answer = True
                self.out.write(text, style)
                self._ends_with_newline = text.endswith("\n")
            else:
                if self.think_out is None:
                    continue
                if not self._think_header:
                    self.think_out.write("thinking…\n", "dim italic")
                    self._think_header = True
                self.think_out.write(text, "dim")

    def _close_thinking(self) -> None:
        self.think_out.write("\n", None)
        self._think_header = False

    def end_line(self) -> None:
        """Finish the answer with a newline (unless it already ends with one)."""
        if not self._ends_with_newline or not self._wrote_answer:
            self.out.write("\n")
        self._ends_with_newline = True
