"""The REPL's terminal: the input history file (private, bounded, UTF-8 only) and keys not
echoed while the model writes or a command runs."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

MAX_HISTORY_BYTES = 8 * 1024 * 1024


def history(path: Path):
    """prompt_toolkit's FileHistory, in a file created 0600 (never followed through a symlink),
    reading back only entries that are valid UTF-8, from a file of bounded size."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    class SafeFileHistory(FileHistory):
        def load_history_strings(self):
            try:
                with open(self.filename, "rb") as fh:
                    fh.seek(max(0, os.fstat(fh.fileno()).st_size - MAX_HISTORY_BYTES))
                    data = fh.read()
            except OSError:
                return []
            strings, entry, valid = [], [], True
            for raw in data.splitlines(keepends=True) + [b"\n"]:
                if raw.startswith(b"+"):
                    try:
                        entry.append(raw[1:].decode("utf-8"))
                    except UnicodeDecodeError:
                        valid = False  # skip the whole entry, not just the line
                    continue
                if entry and valid:
                    strings.append("".join(entry)[:-1])
                entry, valid = [], True
            return list(reversed(strings))

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            return InMemoryHistory()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError:
        return InMemoryHistory()
    return SafeFileHistory(str(path))


@contextlib.contextmanager
def no_echo():
    """While an answer streams, keys typed ahead are not echoed into it (they still reach the
    next prompt); Ctrl-C still interrupts."""
    try:
        import termios

        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd) if os.isatty(fd) else None
    except Exception:  # no termios (Windows), no real stdin (tests with pipe input)
        old = None
    if old is None:
        yield
        return
    new = list(old)
    new[3] &= ~(termios.ECHO | termios.ICANON)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, new)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, old)
