"""The incremental detokenizer never splits a character and adds up to the full decode."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchat.tokenizer.detokenize import IncrementalDetokenizer

ALPHABET = st.sampled_from(list("abc xyz\n\t.,!?'") + ["🦙", "👩‍👩‍👧", "日本語", "한국어", "é", "ñ", "ü", "  ", "\n\n", "١٢٣", "½"])
TEXTS = st.lists(st.one_of(ALPHABET, st.text(max_size=5)), max_size=25).map("".join)


@pytest.fixture(scope="module")
def tokenizers(registry, tiny):
    from transformers import AutoTokenizer

    from llmchat.model.files import tokenizer_folder

    return {
        "smollm2": AutoTokenizer.from_pretrained(str(tokenizer_folder(registry.get("smollm2")))),
        "tiny": AutoTokenizer.from_pretrained(str(tiny["llama"])),
    }


def stream(tokenizer, ids):
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.add(i) for i in ids]
    return deltas, detok.flush()


@pytest.mark.parametrize("name", ["smollm2", "tiny"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_deltas_add_up_to_the_full_decode(tokenizers, name, text):
    tokenizer = tokenizers[name]
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas, rest = stream(tokenizer, ids)
    full = tokenizer.decode(ids, skip_special_tokens=True)
    assert "".join(deltas) + rest == full
    if "\ufffd" not in full:  # (a character the tokenizer cannot represent decodes to U+FFFD)
        assert not any("\ufffd" in d for d in deltas)


def test_emoji_split_over_three_tokens_is_emitted_once_whole(tokenizers):
    tokenizer = tokenizers["smollm2"]
    ids = tokenizer.encode("🦙", add_special_tokens=False)
    assert len(ids) == 3
    deltas, rest = stream(tokenizer, ids)
    assert deltas == ["", "", "🦙"] and rest == ""


def test_special_tokens_are_skipped(tokenizers):
    tokenizer = tokenizers["smollm2"]
    ids = tokenizer.encode("Hi", add_special_tokens=False) + [2]
    deltas, _ = stream(tokenizer, ids)
    assert "".join(deltas) == "Hi"
