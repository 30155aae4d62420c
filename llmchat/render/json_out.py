"""JSON records for --json and --jsonl. ensure_ascii: no control character reaches a terminal."""

from __future__ import annotations

import json
from typing import Any

from ..events import Finished, TokenEvent


def token_record(event: TokenEvent) -> dict[str, Any]:
    return {
        "index": event.index, "id": event.id, "piece": event.piece, "text": event.text,
        "bytes": event.bytes.hex(), "special": event.is_special,
        "logprob": event.logprob, "prob": event.prob, "sample_logprob": _log(event.sample_prob),
        "entropy": event.entropy,
        "top": [{"id": a.id, "piece": a.piece, "prob": a.prob, "logprob": _log(a.prob)} for a in event.alternatives],
    }


def _log(p: float) -> float | None:
    import math

    return math.log(p) if p > 0 else None


def finished_record(finished: Finished) -> dict[str, Any]:
    return {
        "stop_reason": finished.reason, "stop_detail": finished.detail,
        "prompt_tokens": finished.prompt_tokens, "generated_tokens": finished.generated_tokens,
        "reused_tokens": finished.reused_tokens, "ttft_s": round(finished.ttft, 4),
        "prefill_tokens_per_s": round(finished.prefill_tps, 2), "decode_tokens_per_s": round(finished.decode_tps, 2),
        "total_s": round(finished.total_seconds, 4),
    }


def dumps(record: dict[str, Any], indent: int | None = None) -> str:
    return json.dumps(record, ensure_ascii=True, indent=indent)
