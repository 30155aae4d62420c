"""Drawing what `model/` reports through its `Progress` callbacks: a spinner and a bar on a
terminal (stderr), nothing but the one-line notes on a pipe."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from ..sanitize import sanitize


class TerminalProgress:
    """Spinners and bars on stderr when it is a terminal (and `show`); notes always."""

    def __init__(self, show: bool = True):
        self.show = show and sys.stderr.isatty()

    def _console(self):
        from rich.console import Console

        return Console(stderr=True, highlight=False, markup=False, emoji=False)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        if not self.show:
            yield
            return
        with self._console().status(message):
            yield

    @contextlib.contextmanager
    def bar(self, message: str, total: int) -> Iterator[Callable[[int], None]]:
        if not self.show:
            yield lambda done=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn(message), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=self._console(), transient=False)
        task = progress.add_task(message, total=total)
        with progress:
            yield lambda done=1: progress.advance(task, done)

    def note(self, message: str) -> None:
        print(f"llmchat: note: {sanitize(message)}", file=sys.stderr)


def terminal_progress(show: bool = True) -> TerminalProgress:
    return TerminalProgress(show)


class PrefillLine:
    """"reading prompt 1,024/4,700 tokens" on a terminal, once a prompt has taken more than
    `after` seconds (a short prompt shows nothing); `clear()` removes it before the answer."""

    def __init__(self, stream=None, after: float = 1.0):
        import time

        self.stream = stream if stream is not None else sys.stderr
        self.after, self.started, self.shown = after, time.monotonic(), False
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        import time

        if not self.enabled or time.monotonic() - self.started < self.after:
            return
        self.shown = True
        self.stream.write(f"\r\x1b[2Kreading prompt {done:,}/{total:,} tokens")
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False
