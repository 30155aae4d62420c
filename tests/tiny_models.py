"""Tiny random checkpoints saved with save_pretrained, with a real BPE tokenizer trained here.

- llama:       LlamaForCausalLM, Llama-3-style chat template.
- deepseek_v3: DeepseekV3ForCausalLM (MoE + multi-head latent attention), DeepSeek template.
- qwen2_r1:    Qwen2ForCausalLM with a DeepSeek-R1-Distill template that opens <think>.
Also writes a models.toml naming them (returned under the key "toml").
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = [
    "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<|im_start|>", "<|im_end|>",
]
THINK = ["<think>", "</think>"]  # added tokens, not special: they are part of the text the model writes

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
DEEPSEEK_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% else %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}"
)
R1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% else %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "def hello(name):\n    return f'Hello, {name}!'\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 3.14 9.11 9.9",
    "Unicode: café naïve 日本語 한국어 🦙 emoji 👍",
    "A language model predicts the next token from a probability distribution.",
    "Hello world! How are you today? I am fine, thank you.",
] * 20


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.add_tokens(THINK)
    return tokenizer


def _save_tokenizer(raw, folder: Path, bos: str, eos: str, template: str) -> int:
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=bos, eos_token=eos, pad_token="<|endoftext|>")
    tok.chat_template = template
    tok.save_pretrained(str(folder))
    return len(tok)


def build_tiny_models(root: Path) -> dict[str, Path]:
    import torch
    from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, LlamaConfig, LlamaForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root.mkdir(parents=True, exist_ok=True)
    raw = train_tokenizer()
    vocab = raw.get_vocab_size(with_added_tokens=True)
    ids = {t: raw.token_to_id(t) for t in SPECIALS + THINK}
    common = dict(vocab_size=vocab, hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                  max_position_embeddings=256, initializer_range=0.3, tie_word_embeddings=False)
    out: dict[str, Path] = {}

    def save(name, model_cls, config, bos, eos, template):
        folder = root / name
        torch.manual_seed(len(name))
        model = model_cls(config)
        model.generation_config.eos_token_id = ids[eos]
        model.generation_config.bos_token_id = ids[bos]
        model.save_pretrained(str(folder))
        _save_tokenizer(raw, folder, bos, eos, template)
        out[name] = folder

    save("llama", LlamaForCausalLM,
         LlamaConfig(**common, intermediate_size=128, num_key_value_heads=2,
                     bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|eot_id|>"]),
         "<|begin_of_text|>", "<|eot_id|>", LLAMA_TEMPLATE)
    save("deepseek_v3", DeepseekV3ForCausalLM,
         DeepseekV3Config(**common, intermediate_size=128, moe_intermediate_size=32, num_key_value_heads=4,
                          first_k_dense_replace=1, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                          n_group=1, topk_group=1, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8,
                          qk_nope_head_dim=8, v_head_dim=8,
                          bos_token_id=ids["<｜begin▁of▁sentence｜>"], eos_token_id=ids["<｜end▁of▁sentence｜>"]),
         "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", DEEPSEEK_TEMPLATE)
    save("qwen2_r1", Qwen2ForCausalLM,
         Qwen2Config(**common, intermediate_size=128, num_key_value_heads=2,
                     bos_token_id=ids["<｜begin▁of▁sentence｜>"], eos_token_id=ids["<｜end▁of▁sentence｜>"]),
         "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", R1_TEMPLATE)

    toml = root / "models.toml"
    toml.write_text(
        f'[models.tiny-llama]\npath = "{out["llama"]}"\ndescription = "tiny random Llama"\n\n'
        f'[models.tiny-deepseek]\npath = "{out["deepseek_v3"]}"\ndescription = "tiny random DeepSeek-V3"\n\n'
        f'[models.tiny-r1]\npath = "{out["qwen2_r1"]}"\ndescription = "tiny random R1-distill (Qwen2)"\n',
        encoding="utf-8")
    out["toml"] = toml
    (root / "ids.json").write_text(json.dumps(ids))
    return out
