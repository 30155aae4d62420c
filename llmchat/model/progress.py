"""How loading tells the face what it is doing: callbacks, never prints.

`model/` runs long steps (reading a GGUF tokenizer, converting or packing weights, loading a big
checkpoint) and says so through a `Progress`; `render/progress.py` draws it (a spinner and a bar on
a terminal, one line of notes on a pipe). `SILENT` is the default: tests and the server pass
nothing and see nothing.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, Protocol


class Progress(Protocol):
    def step(self, message: str) -> ContextManager[None]:
        """A step of unknown length ("reading the tokenizer from X")."""

    def bar(self, message: str, total: int) -> ContextManager[Callable[[int], None]]:
        """A step of `total` units; the block calls the yielded function with each unit done."""

    def note(self, message: str) -> None:
        """A one-line remark the user should see even in a pipe ("could not cache …")."""


class Silent:
    """A Progress that shows nothing."""

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def bar(self, message: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda done=1: None

    def note(self, message: str) -> None:
        pass


SILENT: Progress = Silent()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' own warnings and tqdm bars are not ours to print: only a Progress speaks."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
