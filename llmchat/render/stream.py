"""Streaming output of an answer: plain for pipes, styled per token for terminals.

One `AnswerWriter` per answer. It receives each TokenEvent, splits reasoning from the answer,
and writes: answer text to `out`, reasoning to `think_out` (or nowhere). Every piece of model text
is passed through `sanitize` unless raw output was asked for (pipes only).
"""

from __future__ import annotations

from typing import TextIO

from ..events import TokenEvent
from ..sanitize import sanitize
from ..thinking import ANSWER, ThinkSplitter
from .styles import boundary_style, legend_segments, prob_style

VIEWS = ("text", "tokens", "probs")


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
    def __init__(self, out: Sink, think_out: Sink | None, *, view: str = "text", family=None,
                 starts_thinking: bool = False):
        self.out, self.think_out, self.view = out, think_out, view
        self.splitter = ThinkSplitter(getattr(family, "think_open", None), getattr(family, "think_close", None),
                                      starts_thinking)
        self.answer: list[str] = []
        self.thinking: list[str] = []
        self._think_header = False
        self._ends_with_newline = True

    def _style(self, event: TokenEvent) -> str | None:
        if self.view == "tokens":
            return boundary_style(event.index)
        if self.view == "probs":
            return prob_style(event.prob)
        return None

    def event(self, event: TokenEvent) -> None:
        self._write(self.splitter.feed(event.text), self._style(event))

    def finish(self) -> None:
        self._write(self.splitter.finish(), None)

    def _write(self, pieces, style) -> None:
        for channel, text in pieces:
            if channel == ANSWER:
                if self._think_header and self.think_out is not None and self.think_out.stream is self.out.stream:
                    self._close_thinking()
                self.answer.append(text)
                self.out.write(text, style)
                self._ends_with_newline = text.endswith("\n")
            else:
                self.thinking.append(text)
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
        if not self._ends_with_newline or not "".join(self.answer):
            self.out.write("\n")
        self._ends_with_newline = True

    @property
    def answer_text(self) -> str:
        return "".join(self.answer)

    @property
    def thinking_text(self) -> str:
        return "".join(self.thinking)


def write_legend(console) -> None:
    from rich.text import Text

    line = Text("probability of each token: ", style="dim")
    for label, style in legend_segments():
        line.append(label, style=style)
    console.print(line)


def stats_line(finished, *, seed: int | None = None, context: tuple[int, int] | None = None) -> str:
    parts = [f"{finished.prompt_tokens} prompt tokens", f"{finished.generated_tokens} generated",
             f"TTFT {finished.ttft:.2f}s", f"{finished.decode_tps:.1f} tok/s",
             f"stop: {finished.reason}" + (f" ({finished.detail})" if finished.detail else "")]
    if finished.reused_tokens:
        parts.insert(1, f"{finished.reused_tokens} reused")
    if seed is not None:
        parts.append(f"seed {seed}")
    if context:
        parts.append(f"context {context[0]}/{context[1]}")
    return sanitize(" · ".join(parts))
