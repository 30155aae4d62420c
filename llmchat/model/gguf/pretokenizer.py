"""Make the tokenizer transformers builds from a GGUF tokenize exactly as llama.cpp does.

transformers' GGUF converter maps the vocabulary and merges, but not every llama.cpp
pre-tokenizer (`tokenizer.ggml.pre`). For the pre-tokenizers below llama.cpp first isolates each
number character (`\\p{N}`), then applies the GPT-2 pattern; without that step, whitespace before
a digit and non-ASCII numbers split differently (found by comparing against llama.cpp on the
smollm2 GGUF: tests/data/smollm2_llamacpp_golden.json, 79/79 cases agree after this fix).
"""

from __future__ import annotations

import json
from pathlib import Path

# llama.cpp pre-tokenizer names whose first regex is "\p{N}" (llama-vocab.cpp).
ISOLATE_DIGITS = {"smollm", "starcoder", "refact", "command-r"}

_ISOLATE = {"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Isolated", "invert": False}


def gguf_pre_tokenizer(path: Path) -> str | None:
    """llama.cpp's pre-tokenizer name (`tokenizer.ggml.pre`), read by the header check's parser."""
    from .check import check_gguf

    return check_gguf(path)["pre"]


def fix_tokenizer_json(tokenizer_json: Path, pre: str | None) -> bool:
    """Rewrite tokenizer.json in place when llama.cpp's pre-tokenizer needs a step it lacks."""
    if pre not in ISOLATE_DIGITS:
        return False
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    current = data.get("pre_tokenizer") or {}
    steps = current.get("pretokenizers", []) if current.get("type") == "Sequence" else [current] if current else []
    if any(step.get("type") in ("Digits", "Split") and "N" in json.dumps(step.get("pattern", step)) for step in steps):
        return False
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [_ISOLATE, *steps]}
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return True
