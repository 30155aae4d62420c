"""A *scripted checkpoint*: a real tiny Llama whose greedy decoding follows a fixed token chain.

One-hot embeddings (hidden size = vocab size), attention and MLP output projections zeroed so the
residual stream is the token's embedding, and an lm_head that maps each token to its successor.
With a WordLevel tokenizer whose tokens are whole words, a test can make the real loader and the
real engine produce exactly the text it wants: thinking blocks, long answers, hostile bytes.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: "
    "{% if m['role'] == 'assistant' and '</think>' in m['content'] %}{{ m['content'].split('</think>')[-1].strip() }}"
    "{% else %}{{ m['content'] }}{% endif %} <eot> {% endfor %}"
    "{% if add_generation_prompt %}assistant: <think> {% endif %}"
)


def build_scripted(folder: Path, chain: list[str], extra_words: list[str] = ()) -> Path:
    """Greedy decoding after "assistant: <think>" follows `chain`, then ends with <eot>."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "<eot>"]
    words = ["system:", "user:", "assistant:", "<think>", "</think>"] + list(extra_words)
    vocab: dict[str, int] = {}
    for token in specials + words + chain:
        vocab.setdefault(token, len(vocab))
    if len(vocab) % 2:  # RoPE needs an even head dimension (= vocab size here)
        vocab["<pad>"] = len(vocab)
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="<eot>", unk_token="<unk>")
    tokenizer.chat_template = TEMPLATE
    n = len(vocab)
    config = LlamaConfig(vocab_size=n, hidden_size=n, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, head_dim=n, max_position_embeddings=512, tie_word_embeddings=False,
                         bos_token_id=vocab["<s>"], eos_token_id=vocab["<eot>"], rms_norm_eps=1e-6)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(n))
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        head = torch.zeros(n, n)
        sequence = ["<think>"] + chain + ["<eot>"]
        for current, following in zip(sequence, sequence[1:]):
            head[vocab[following], vocab[current]] = 1.0
        model.lm_head.weight.copy_(head * 4.0)
    model.generation_config.eos_token_id = vocab["<eot>"]
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
