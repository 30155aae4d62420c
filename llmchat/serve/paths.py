"""Where a server's socket lives, who may use it, and whether a server is alive behind it.

The default socket is `$XDG_RUNTIME_DIR/llmchat/<key>.sock` (or `/tmp/llmchat-<uid>/<key>.sock`),
where the key hashes everything that decides what the loaded model computes: the same key means
an `ask` gets the answer the in-process path would give. No torch here: `ask` decides whether to
load a model after this module has run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
from pathlib import Path

from ..errors import LlmchatError, UsageError
from ..paths import runtime_dir

LIVE, STALE, ABSENT = "live", "stale", "absent"
CONNECT_SECONDS = 5.0


def server_key(spec, *, dtype: str | None, quant: str | None, device: str | None) -> str:
    """A short hash of the model and the load options as given (None → the spec's own value).

    Besides alias, location and dtype/quant/device, the spec fields that the server reads from its
    own copy of models.toml (system prompt, template, context...) are part of the key, so a server
    started before models.toml changed is simply not found, rather than answering differently."""
    location = spec.location
    if spec.source in ("path", "gguf"):
        location = os.path.realpath(os.path.expanduser(location))
    ident = {
        "alias": spec.alias, "source": spec.source, "location": location, "revision": spec.revision,
        "dtype": dtype or spec.dtype, "quant": quant or spec.quant, "device": device or spec.device,
        "family": spec.family, "context": spec.context, "system": spec.system, "thinking": spec.thinking,
        "chat_template": spec.chat_template, "trust_remote_code": spec.trust_remote_code,
        "allow_pickle": spec.allow_pickle, "max_memory": dict(spec.max_memory), "prompt_passes": spec.prompt_passes,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def default_socket(key: str) -> Path:
    return runtime_dir() / f"{key}.sock"


def private_dir(path: Path, *, create: bool) -> Path:
    """The socket directory, created 0700; refused unless it is ours and private, because anyone
    who can write there could put a socket of their own in front of our prompts."""
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LlmchatError(f"cannot create {path}: {exc.strerror or exc}", "check the permissions of its parent") from None
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", "create it, or give another --socket") from None
    if not stat.S_ISDIR(info.st_mode):
        raise LlmchatError(f"{path} is not a directory", "remove it or set XDG_RUNTIME_DIR")
    if info.st_uid != os.getuid():
        raise LlmchatError(f"{path} is owned by uid {info.st_uid}, not by you (uid {os.getuid()})",
                           "remove it or set XDG_RUNTIME_DIR to a directory of your own")
    if info.st_mode & 0o077:
        raise LlmchatError(f"{path} is readable or writable by others (mode {info.st_mode & 0o777:o})",
                           f"run chmod 700 {path}")
    return path


def probe(path: Path, timeout: float = CONNECT_SECONDS) -> str:
    """LIVE when a server accepts a connection at `path`, STALE when the file is there but nobody
    listens (a server that died without cleaning up), ABSENT when there is no file."""
    conn = connect(path, timeout)
    if conn is None:
        return STALE if os.path.lexists(path) else ABSENT
    conn.close()
    return LIVE


def connect(path: Path, timeout: float = CONNECT_SECONDS) -> socket.socket | None:
    """A connected socket, or None when nobody listens there. A server busy with another request
    still accepts (the listen backlog): the caller then waits its turn."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
        conn.close()
        return None
    except OSError as exc:
        conn.close()
        if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED, errno.ENOENT, errno.EACCES):
            return None
        raise
    return conn


@contextlib.contextmanager
def socket_lock(path: Path):
    """Serialise "is it stale? unlink; bind" between processes, so that one cleaning a stale
    socket never removes the fresh one that another process has just bound."""
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale(path: Path) -> bool:
    """Unlink `path` if it is a dead server's socket (checked again under the lock); True if gone."""
    with socket_lock(path):
        state = probe(path)
        if state == STALE:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return True
        return state == ABSENT


def live_sockets(directory: Path) -> list[Path]:
    """Socket files in the runtime directory (alive or not), for `serve --status`."""
    return sorted(directory.glob("*.sock")) if directory.is_dir() else []
