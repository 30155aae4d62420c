"""What `llmchat models show` reports about a model — read from its files, without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config.families import detect_family
from ..config.registry import ModelSpec
from ..hf_folder import context_length, generation_eos, read_json
from ..tokenizer.templates import find_template
from .files import tokenizer_folder
from .gguf.convert import gguf_file
from .load import eos_ids
from .progress import SILENT, Progress
from .safetensors_header import safetensors_parameters


def template_kind(template: str | None) -> str:
    if not template:
        return "none"
    for marker, kind in (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama3"),
                         ("<｜User｜>", "deepseek"), ("[INST]", "llama2/mistral"), ("<start_of_turn>", "gemma")):
        if marker in template:
            return kind
    return "custom"


def gguf_parameters(path: Path) -> int:
    from gguf import GGUFReader

    return int(sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors))


def describe(spec: ModelSpec, download: bool = False, progress: Progress = SILENT) -> dict[str, Any]:
    folder = tokenizer_folder(spec, download, progress=progress)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tok_config = read_json(folder / "tokenizer_config.json")
    found = find_template(folder, spec)
    template = found[0] if found else None
    info: dict[str, Any] = {"alias": spec.alias, "source": spec.source, "location": spec.location}
    if spec.source in ("gguf", "package"):
        gguf = gguf_file(spec)
        info["gguf_file"] = str(gguf)
        info["parameters"] = gguf_parameters(gguf)
        info["stored_dtype"] = "GGUF (quantised)"
        info["weights_converted"] = (folder / "model.safetensors").is_file()
    else:
        info["parameters"], info["stored_dtype"] = safetensors_parameters(folder)
    info["transformers_folder"] = str(folder)
    text_config = config.get("text_config") or config
    info.update({
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "model_type": config.get("model_type"),
        "layers": text_config.get("num_hidden_layers"),
        "hidden_size": text_config.get("hidden_size"),
        "heads": text_config.get("num_attention_heads"),
        "kv_heads": text_config.get("num_key_value_heads") or text_config.get("num_attention_heads"),
        "context_length": spec.context or context_length(config),
        "vocab_size": text_config.get("vocab_size"),
        "dtype": spec.dtype,
        "quant": spec.quant,
        "device": spec.device,
        "chat_template": template_kind(template),
    })
    special, vocab = _special_tokens(folder)
    family = detect_family(spec.family, config.get("model_type"), template, spec.thinking)
    gen_eos = generation_eos(folder) if (folder / "generation_config.json").is_file() else config.get("eos_token_id")
    tok_eos = vocab.get(tok_config.get("eos_token")) if isinstance(tok_config.get("eos_token"), str) else None
    eos = eos_ids(gen_eos, tok_eos, vocab, family)
    inverse = {i: t for t, i in vocab.items()}
    info["eos_ids"] = [{"id": i, "token": inverse.get(i)} for i in eos]
    info["special_tokens"] = special
    info["family"] = family.name
    info["thinking"] = family.think_open is not None
    info["description"] = spec.description
    return info


def _special_tokens(folder: Path) -> tuple[list[dict], dict[str, int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    added = tokenizer.get_added_tokens_decoder()
    special = [{"id": i, "token": t.content} for i, t in sorted(added.items()) if t.special]
    return special, tokenizer.get_vocab(with_added_tokens=True)
