"""Ctrl-C during generation as a flag, not an exception.

A KeyboardInterrupt raised at an arbitrary bytecode is a poor way to stop a generation: it can land
in the middle of a forward pass or of the renderer, and we saw it lost (typer turns one that
escapes a command into a silent exit 130 — cli/__init__.py now translates it — and once, right
after a fresh model load, an answer ran on to its end). So while an answer streams, SIGINT only
sets a flag that the engine checks after every token ("stops within about one token", the KV cache
consistent); a second Ctrl-C raises KeyboardInterrupt as usual, for a loop that is stuck.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class StopFlag:
    """Callable: True once a stop was requested."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def sigint_sets(flag: StopFlag):
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class TimeLimitExceeded(Exception):
    """Raised inside a `time_limit` block that ran too long."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Bound pure-Python work (a chat template that loops for ever) with SIGALRM; a no-op outside
    the main thread or where setitimer does not exist."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise TimeLimitExceeded(f"it ran for more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
