"""Saved conversations: JSON with messages, model, settings and per-token data.

Writes are atomic (temp file in the same folder, fsync, rename): a conversation being saved is
never half-written. Reads are size-capped and validated (version, roles, types).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..render.json_out import finished_record, token_record

VERSION = 1
MAX_BYTES = 32 * 1024 * 1024


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llmchat"


def last_path() -> Path:
    return state_dir() / "last.json"


def to_record(session) -> dict[str, Any]:
    turns = []
    for ex in session.exchanges:
        turns.append({"user": ex.user, "raw": ex.raw, "answer": ex.answer, "thinking": ex.thinking,
                      "interrupted": ex.interrupted, "tokens": [token_record(e) for e in ex.events],
                      "stats": finished_record(ex.finished) if ex.finished else None})
    return {"version": VERSION, "model": session.loaded.spec.alias, "settings": session.settings(),
            "system": session.system, "messages": session.messages(), "turns": turns}


def save(session, path: Path) -> Path:
    path = Path(path).expanduser()
    data = json.dumps(to_record(session), ensure_ascii=False, indent=1).encode("utf-8")
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load(path: Path) -> dict[str, Any]:
    """Read and validate a saved conversation; UsageError (exit 2) names the path and line."""
    path = Path(path).expanduser()
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UsageError(f"{path} is larger than 32 MiB", "is this a conversation file?")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", "is this a conversation file?") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}", "the file is damaged") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise UsageError(f"{path}: not a llmchat conversation (version {data.get('version') if isinstance(data, dict) else '?'})",
                         f"expected version {VERSION}")
    turns = data.get("turns")
    if not isinstance(turns, list) or not all(isinstance(t, dict) and isinstance(t.get("user"), str)
                                              and isinstance(t.get("raw", ""), str) for t in turns):
        raise UsageError(f"{path}: `turns` must be a list of {{user, raw, …}} objects", "the file is damaged")
    for message in data.get("messages", []):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise UsageError(f"{path}: unknown role {message.get('role') if isinstance(message, dict) else message!r}",
                             "roles are system, user and assistant")
    if data.get("system") is not None and not isinstance(data["system"], str):
        raise UsageError(f"{path}: `system` must be a string", "the file is damaged")
    return data


def restore(session, data: dict[str, Any]) -> None:
    """Put a loaded record into a session (token data is kept for /inspect)."""
    from ..events import Alternative, TokenEvent
    from .session import Exchange

    session.clear()
    session.system = data.get("system")
    for turn in data["turns"]:
        events = []
        for t in turn.get("tokens", []):
            try:
                events.append(TokenEvent(index=t["index"], id=t["id"], piece=t["piece"], bytes=bytes.fromhex(t["bytes"]),
                                         text=t["text"], is_special=t["special"], prob=t["prob"], logprob=t["logprob"],
                                         sample_prob=_exp(t.get("sample_logprob")), entropy=t["entropy"],
                                         alternatives=tuple(Alternative(a["id"], a["piece"], a["prob"]) for a in t["top"])))
            except (KeyError, TypeError, ValueError):
                events = []
                break
        session.exchanges.append(Exchange(user=turn["user"], raw=turn.get("raw", ""), answer=turn.get("answer", ""),
                                          thinking=turn.get("thinking", ""), events=events,
                                          interrupted=bool(turn.get("interrupted"))))


def _exp(value) -> float:
    import math

    return math.exp(value) if isinstance(value, (int, float)) else math.nan
