"""Consoles with markup, highlighting and emoji off: model text is never interpreted as markup."""

from __future__ import annotations

import os
import sys


def make_console(stderr: bool = False, color: bool | None = None):
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1; a closed reader (`| head`) is not an error for us (see cli.main).
            from ..errors import OutputClosed

            self.quiet = True
            raise OutputClosed()

        def _render_buffer(self, buffer) -> str:
            text = super()._render_buffer(buffer)
            if self.is_terminal:
                return text
            return "\n".join(line.rstrip(" ") for line in text.split("\n"))  # a pipe gets no padding

    stream = sys.stderr if stderr else sys.stdout
    no_color = color is False or (color is None and "NO_COLOR" in os.environ)
    console = _Console(file=stream, markup=False, highlight=False, emoji=False,
                       no_color=no_color, force_terminal=True if color else None, soft_wrap=False)
    if not console.is_terminal:
        console.width = PIPE_WIDTH  # a pipe is never wrapped: a line is a record
    return console


PIPE_WIDTH = 100_000
