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
