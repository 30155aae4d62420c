"""`ask --jsonl`: one prompt per stdin line, one JSON line out per input line, model loaded once.

A line is a JSON object ({"prompt", "system", "temperature", "top_p", "top_k", "min_p",
"repetition_penalty", "seed", "max_tokens", "stop", "raw"}), a JSON string, or plain text (any
line that does not start with '{' or '"'). Blank lines are skipped. A bad line yields
{"line": N, "error": "..."} and the batch goes on; the exit code is 1 if any line failed.
"""

from __future__ import annotations

import json
import sys

from ..engine.codec import dumps
from ..engine.source import ModelSource
from ..errors import EXIT_RUNTIME, LlmchatError
from ..render.answer import stream_answer
from .inputs import decode_bytes

LINE_KEYS = {"prompt": str, "system": str, "temperature": (int, float), "top_p": (int, float), "top_k": int,
             "min_p": (int, float), "repetition_penalty": (int, float), "seed": int, "max_tokens": int,
             "stop": list, "raw": bool}


def parse_line(line: str) -> dict:
    stripped = line.strip()
    if not stripped.startswith(("{", '"')):
        return {"prompt": line.rstrip("\r\n")}
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if isinstance(value, str):
        return {"prompt": value}
    if not isinstance(value, dict):
        raise ValueError("a line must be a JSON object or string")
    for key, item in value.items():
        if key not in LINE_KEYS:
            raise ValueError(f"unknown key {key!r} (allowed: {', '.join(LINE_KEYS)})")
        if not isinstance(item, LINE_KEYS[key]) or (LINE_KEYS[key] is int and isinstance(item, bool)):
            raise ValueError(f"{key!r} has the wrong type")
    if not isinstance(value.get("prompt"), str) or not value["prompt"].strip():
        raise ValueError('missing "prompt"')
    if "stop" in value and not all(isinstance(s, str) for s in value["stop"]):
        raise ValueError('"stop" must be a list of strings')
    return value


def run_batch(source: ModelSource, params, *, system, raw, logprobs, truncate, input_errors) -> int:
    """Answer each stdin line with `source` (a LocalModel without prefix reuse: every line starts
    fresh, so a line's answer does not depend on the lines before it)."""
    failed = False
    for number, data in enumerate(sys.stdin.buffer, start=1):
        try:
            line = decode_bytes(data, f"line {number}", input_errors)
            if not line.strip():
                continue
            item = parse_line(line)
            line_params = params.with_overrides(
                temperature=item.get("temperature"), top_p=item.get("top_p"), top_k=item.get("top_k"),
                min_p=item.get("min_p"), repetition_penalty=item.get("repetition_penalty"), seed=item.get("seed"),
                max_new_tokens=item.get("max_tokens"), stop=tuple(item["stop"]) if "stop" in item else None)
            prompt = source.prepare(item["prompt"], system=item.get("system", system), raw=item.get("raw", raw),
                                    truncate=truncate, max_new_tokens=line_params.max_new_tokens)
            result = stream_answer(source, prompt, line_params, None, logprobs)
            record = {"line": number, **result.record(source, line_params, logprobs)}
            if result.finished.reason == "interrupted":
                print(dumps(record), flush=True)
                raise KeyboardInterrupt
        except (ValueError, LlmchatError) as exc:
            failed = True
            message = exc.one_line() if isinstance(exc, LlmchatError) else str(exc)
            record = {"line": number, "error": message}
        print(dumps(record), flush=True)
    return EXIT_RUNTIME if failed else 0
