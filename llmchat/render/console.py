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

    stream = sys.stderr if stderr else sys.stdout
    no_color = color is False or (color is None and "NO_COLOR" in os.environ)
    return _Console(file=stream, markup=False, highlight=False, emoji=False,
                    no_color=no_color, force_terminal=True if color else None, soft_wrap=False)
