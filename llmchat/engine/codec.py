"""The one dict form of the engine's events, used by `ask --json`, the socket protocol and saved
conversations alike: `*_to_dict` and `*_from_dict` are inverses.

A token's bytes are hex (`"20 43"` as `"2043"`), every probability travels with its log, and
JSON is written ASCII-only (`dumps`), so any str the engine makes — lone surrogates from a broken
token included — survives a round trip unchanged and no control character reaches a terminal.
Durations are rounded to 0.1 ms, speeds to 0.01 tok/s.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..config.families import Family
from .events import Alternative, Distribution, Finished, TokenEvent


def _log(p: float) -> float | None:
    return math.log(p) if p > 0 else None


def _num(value: float) -> float | None:
    """NaN (a number the engine does not know, e.g. a remote engine's entropy) travels as null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _exp(value) -> float:
    return math.exp(value) if isinstance(value, (int, float)) else math.nan


def token_to_dict(event: TokenEvent) -> dict[str, Any]:
    return {
        "index": event.index, "id": _id(event.id), "piece": event.piece, "text": event.text,
        "bytes": event.bytes.hex(), "special": event.is_special,
        "logprob": _num(event.logprob), "prob": _num(event.prob),
        "sample_logprob": _log(event.sample_prob),
        "sample_prob": None if math.isnan(event.sample_prob) else event.sample_prob,  # NaN: not sampled (score, /branch)
        "entropy": _num(event.entropy),
        "top": [{"id": _id(a.id), "piece": a.piece, "prob": a.prob, "logprob": _log(a.prob)} for a in event.alternatives],
    }


def _id(token_id: int) -> int | None:
    """A token id, or null for a text-level server's tokens (no ids; remote.tokenizer.TEXT_ID)."""
    return token_id if token_id >= 0 else None


def _from_id(value) -> int:
    return -1 if value is None else int(value)


def token_from_dict(data: dict[str, Any]) -> TokenEvent:
    """KeyError, TypeError or ValueError on a record that is not a token (callers decide)."""
    sample_prob = data.get("sample_prob")
    return TokenEvent(index=int(data["index"]), id=_from_id(data["id"]), piece=data["piece"], bytes=bytes.fromhex(data["bytes"]),
                      text=data["text"], is_special=bool(data["special"]), prob=_float(data["prob"]), logprob=_float(data["logprob"]),
                      sample_prob=sample_prob if isinstance(sample_prob, (int, float)) else _exp(data.get("sample_logprob")),
                      entropy=_float(data["entropy"]),
                      alternatives=tuple(Alternative(_from_id(a["id"]), a["piece"], a["prob"]) for a in data["top"]))


def finished_to_dict(finished: Finished) -> dict[str, Any]:
    return {
        "stop_reason": finished.reason, "stop_detail": finished.detail,
        "prompt_tokens": finished.prompt_tokens, "generated_tokens": finished.generated_tokens,
        "reused_tokens": finished.reused_tokens, "ttft_s": round(finished.ttft, 4),
        "prefill_tokens_per_s": round(finished.prefill_tps, 2), "decode_tokens_per_s": round(finished.decode_tps, 2),
        "total_s": round(finished.total_seconds, 4),
    }


def finished_from_dict(data: dict[str, Any]) -> Finished:
    return Finished(reason=data["stop_reason"], detail=data.get("stop_detail") or "",
                    prompt_tokens=int(data["prompt_tokens"]), generated_tokens=int(data["generated_tokens"]),
                    reused_tokens=int(data["reused_tokens"]), ttft=float(data["ttft_s"]),
                    prefill_tps=float(data["prefill_tokens_per_s"]), decode_tps=float(data["decode_tokens_per_s"]),
                    total_seconds=float(data["total_s"]))


def distribution_to_dict(dist: Distribution) -> dict[str, Any]:
    return {"prompt_tokens": dist.prompt_tokens, "entropy": _num(dist.entropy),
            "top": [{"id": a.id, "piece": a.piece, "prob": a.prob, "logprob": _log(a.prob)} for a in dist.top]}


def distribution_from_dict(data: dict[str, Any]) -> Distribution:
    return Distribution(prompt_tokens=int(data["prompt_tokens"]), entropy=_float(data["entropy"]),
                        top=tuple(Alternative(int(a["id"]), a["piece"], float(a["prob"])) for a in data["top"]))


def score_to_dict(result) -> dict[str, Any]:
    """An `engine.score.Score`: every token as in `ask --json --logprobs`, plus its rank."""
    return {"context_tokens": result.context, "windows": result.windows,
            "tokens": [{**token_to_dict(t.event), "rank": t.rank} for t in result.tokens]}


def score_from_dict(data: dict[str, Any]):
    from .score import Score, ScoredToken

    return Score(tokens=[ScoredToken(token_from_dict(t), int(t["rank"])) for t in data["tokens"]],
                 context=int(data["context_tokens"]), windows=int(data["windows"]))


def family_to_dict(family: Family) -> dict[str, Any]:
    return {"name": family.name, "think_open": family.think_open, "think_close": family.think_close,
            "end_of_turn": list(family.end_of_turn)}


def family_from_dict(data: dict[str, Any]) -> Family:
    return Family(data["name"], data.get("think_open"), data.get("think_close"), tuple(data.get("end_of_turn", ())))


def dumps(record: dict[str, Any], indent: int | None = None, compact: bool = False) -> str:
    """JSON, ASCII-only (`compact`: no spaces, for the wire)."""
    return json.dumps(record, ensure_ascii=True, indent=indent, separators=(",", ":") if compact else None)
