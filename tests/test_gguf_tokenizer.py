"""The tokenizer built from the smollm2 GGUF tokenizes exactly as llama.cpp does.

Golden ids come from llama.cpp's own tokenizer (llama-cpp-python 0.3.36, vocab_only) on the same
file: tests/data/make_tokenizer_golden.py regenerates them (it needs llama-cpp-python, not in CI).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN = json.loads((Path(__file__).parent / "data" / "smollm2_llamacpp_golden.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def smol_tokenizer(registry):
    from tokenizers import Tokenizer

    from llmchat.model.files import tokenizer_folder

    return Tokenizer.from_file(str(tokenizer_folder(registry.get("smollm2")) / "tokenizer.json"))


@pytest.mark.smollm2
@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: repr(c["text"][:30]) + ("-special" if c["special"] else ""))
def test_gguf_tokenizer_matches_llama_cpp(smol_tokenizer, case):
    smol_tokenizer.encode_special_tokens = not case["special"]  # special=False: special-looking text is plain text
    assert smol_tokenizer.encode(case["text"], add_special_tokens=False).ids == case["ids"]
