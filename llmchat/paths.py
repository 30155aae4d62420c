"""Where llmchat keeps its files, and the one way it writes them.

Folders follow the XDG base directories: configuration in $XDG_CONFIG_HOME/llmchat (models.toml),
caches in $XDG_CACHE_HOME/llmchat (GGUF conversions, packed weights), state in
$XDG_STATE_HOME/llmchat (history, conversations, the server log), sockets in
$XDG_RUNTIME_DIR/llmchat (or /tmp/llmchat-<uid> where it is unset).

Every file llmchat writes for later goes through `atomic_file` / `atomic_write` (a temp file in
the same folder, fsync, rename) or `atomic_dir`: a crash or Ctrl-C never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _xdg(variable: str, default: Path) -> Path:
    return Path(os.environ.get(variable) or default) / "llmchat"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", Path.home() / ".config")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", Path.home() / ".cache")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", Path.home() / ".local" / "state")


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "llmchat" if base else Path(f"/tmp/llmchat-{os.getuid()}")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block ends without an error the file is fsync-ed
    and renamed onto `path`, otherwise removed. The folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a folder under a temp name beside `final`; rename it into place when complete (when
    another process finished first, its folder is kept and ours dropped)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb+") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
