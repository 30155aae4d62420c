"""Saved conversations: JSON with messages, model, settings and per-token data.

Writes are atomic (`paths.atomic_write`: temp file in the same folder, fsync, rename): a
conversation being saved is never half-written. Reads are size-capped and validated (version,
roles, types). Tokens and stats are in the engine's one dict form (`engine.codec`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.codec import finished_from_dict, finished_to_dict, token_from_dict, token_to_dict
from ..errors import UsageError
from ..paths import atomic_write, state_dir

VERSION = 1
MAX_BYTES = 32 * 1024 * 1024


def last_path() -> Path:
    return state_dir() / "last.json"


def to_record(session) -> dict[str, Any]:
    turns = []
    for ex in session.exchanges:
        turns.append({"user": ex.user, "raw": ex.raw, "answer": ex.answer, "thinking": ex.thinking,
                      "interrupted": ex.interrupted, "tokens": [token_to_dict(e) for e in ex.events],
                      "stats": finished_to_dict(ex.finished) if ex.finished else None})
    return {"version": VERSION, "model": session.source.spec.alias, "settings": session.settings(),
            "view": session.view, "think": session.think, "system": session.system, "messages": session.messages(), "turns": turns}


def save(session, path: Path) -> Path:
    data = json.dumps(to_record(session), ensure_ascii=False, indent=1).encode("utf-8")
    return atomic_write(Path(path).expanduser(), data)


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
    """Put a loaded record into a session (token data is kept for /inspect, stats for /stats; a
    turn whose token records are damaged keeps its text only)."""
    from .session import Exchange

    session.clear()
    session.system = data.get("system")
    for turn in data["turns"]:
        try:
            events = [token_from_dict(t) for t in turn.get("tokens", [])]
        except (KeyError, TypeError, ValueError, AttributeError):
            events = []
        try:
            finished = finished_from_dict(turn["stats"]) if turn.get("stats") else None
        except (KeyError, TypeError, ValueError, AttributeError):
            finished = None
        session.exchanges.append(Exchange(user=turn["user"], raw=turn.get("raw", ""), answer=turn.get("answer", ""),
                                          thinking=turn.get("thinking", ""), events=events, finished=finished,
                                          interrupted=bool(turn.get("interrupted"))))


def saved_params(data: dict[str, Any], params, given: dict[str, Any]):
    """The sampling settings of a saved conversation, except those the command line gives."""
    from ..engine.sampling import SamplingParams

    settings = data.get("settings") or {}
    names = set(SamplingParams().to_dict()) - {"stop"}
    if not isinstance(settings, dict):
        return params
    overrides = {key: value for key, value in settings.items() if key in names and given.get(key) is None
                 and isinstance(value, (int, float)) and not isinstance(value, bool)}
    if "max_tokens" in overrides:
        overrides["max_new_tokens"] = int(overrides.pop("max_tokens"))
    for key in ("top_k", "seed"):
        if key in overrides:
            overrides[key] = int(overrides[key])
    try:
        return params.with_overrides(**overrides)
    except UsageError:
        return params  # a damaged file keeps today's settings


def summary(data: dict[str, Any]) -> str:
    """One line for a resumed chat: how many exchanges, the model, the last message's first words."""
    turns = data.get("turns") or []
    words, last = str(turns[-1].get("user", "")).split() if turns else [], ""
    for n, word in enumerate(words):
        if len(last) + len(word) + 1 > 50:
            last += "…"
            break
        last = f"{last} {word}".strip()
    tail = f" · last: \u201c{last}\u201d" if last else ""
    return f"resumed {len(turns)} exchange{'s' * (len(turns) != 1)} with {data.get('model', '?')}{tail}"
