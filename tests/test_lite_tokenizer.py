"""The lite tokenizer (tokenizers + templates.py) answers every question llmchat asks exactly as
transformers' AutoTokenizer does, on every tokenizer the tests have."""

from __future__ import annotations

import pytest

from llmchat.tokenizer.lite import LiteTokenizer

TEXTS = ["Hello world, what is the capital of France?", "  two  spaces\tand\ttabs\n\nnew lines",
         "numbers 1234567 and 3.14159", "emoji 🦙 and accents éàü, CJK 你好", "special <|im_start|> inside </s> text",
         "<think>\nhmm\n</think>", "don't isn't they're"]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
]


def pairs(tiny, smollm2_reference):
    from transformers import AutoTokenizer

    folders = {"tiny-llama": tiny["llama"], "tiny-deepseek": tiny["deepseek_v3"], "tiny-r1": tiny["qwen2_r1"],
               "smollm2": smollm2_reference.folder}
    for name, folder in folders.items():
        yield name, LiteTokenizer(folder), AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.smollm2
def test_lite_tokenizer_equals_autotokenizer(tiny, smollm2_reference):
    checked = 0
    for name, lite, full in pairs(tiny, smollm2_reference):
        assert lite.all_special_ids == full.all_special_ids, name
        assert lite.eos_token_id == full.eos_token_id and lite.get_vocab() == full.get_vocab(), name
        assert lite.chat_template == full.chat_template, name
        for text in TEXTS:
            if name == "tiny-r1" and any(c.isdigit() for c in text):
                continue  # transformers rebuilds Qwen2's pre-tokenizer instead of reading the fixture's (see README)
            for special in (True, False):
                ids = lite.encode(text, add_special_tokens=special)
                assert ids == full.encode(text, add_special_tokens=special), (name, text, special)
                for skip in (True, False):
                    assert lite.decode(ids, skip_special_tokens=skip) == full.decode(ids, skip_special_tokens=skip), (name, text)
                assert lite.convert_ids_to_tokens(ids) == full.convert_ids_to_tokens(ids)
                checked += 1
        for messages in CONVERSATIONS:
            if name == "tiny-r1" and any(c.isdigit() for m in messages for c in m["content"]):
                continue
            for gen in (True, False):
                expected = full.apply_chat_template(messages, add_generation_prompt=gen, return_dict=False)
                assert lite.apply_chat_template(messages, add_generation_prompt=gen) == expected, (name, messages)
    assert checked >= 40


def test_loads_without_importing_transformers(tiny):
    import subprocess
    import sys

    code = ("import sys; from llmchat.tokenizer.lite import LiteTokenizer; "
            f"t = LiteTokenizer({str(tiny['llama'])!r}); t.apply_chat_template([{{'role': 'user', 'content': 'hi'}}]); "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_special_tokens_only_in_special_tokens_map(tiny, tmp_path):
    """Older checkpoints name bos/eos only in special_tokens_map.json; transformers merges it in."""
    import json
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "old-style"
    shutil.copytree(tiny["llama"], folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    names = {key: config.pop(key) for key in ("bos_token", "eos_token") if key in config}
    config.pop("added_tokens_decoder", None)
    assert names, "the fixture names bos/eos in tokenizer_config.json"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps(names))
    lite, full = LiteTokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    assert lite.eos_token_id == full.eos_token_id is not None
    assert lite.all_special_ids == full.all_special_ids
    messages = [{"role": "user", "content": "Hi!"}]
    assert lite.apply_chat_template(messages, add_generation_prompt=True) == \
        full.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
