"""What llmchat reads from a Hugging Face model folder without any model library: JSON files, the
context length, the named special tokens, and which files hold the checkpoint's weights.

A GGUF source becomes such a folder too (its tokenizer and config extracted into the cache), and
llmchat's packed-weight cache files (`packed-*.safetensors`) may sit beside a conversion: they
are never the checkpoint's weights (`is_packed`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelRejected

# The named special tokens a chat template sees (transformers' SPECIAL_TOKENS_ATTRIBUTES).
NAMED_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
PACKED_PREFIX = "packed-"  # llmchat's packed-weight cache files (model/cpu/weights.py)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def read_json(path: Path) -> dict:
    """A JSON object from a model folder, or {} when the file is absent."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelRejected(f"{path} is not valid JSON: {exc}", "the model folder is corrupt") from None
    return data if isinstance(data, dict) else {}


def context_length(config: dict) -> int:
    """The model's context window from config.json (2048 when it names none)."""
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length"):
        value = config.get(key) or (config.get("text_config") or {}).get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def special_token_names(tok_config: dict) -> dict[str, str]:
    """bos_token, eos_token, … from tokenizer_config.json (plain strings or AddedToken dicts)."""
    names: dict[str, str] = {}
    for key in NAMED_SPECIAL:
        value = tok_config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            names[key] = value
    return names


def folder_special_names(folder: Path) -> dict[str, str]:
    """The named special tokens of a model folder: tokenizer_config.json, with the names it lacks
    filled from special_tokens_map.json (older checkpoints keep bos/eos only there; transformers
    merges both)."""
    names = special_token_names(read_json(Path(folder) / "special_tokens_map.json"))
    names.update(special_token_names(read_json(Path(folder) / "tokenizer_config.json")))
    return names


def generation_eos(folder: Path):
    """generation_config.json's eos_token_id (an int, a list, or None)."""
    try:
        return json.loads((Path(folder) / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return None


def is_packed(path: Path) -> bool:
    """True for llmchat's own packed-weight cache files."""
    return Path(path).name.startswith(PACKED_PREFIX)


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's own *.safetensors (the index's shards when there is one), never llmchat's
    packed cache files that may sit in the same folder."""
    index = Path(folder) / "model.safetensors.index.json"
    if index.is_file():
        return sorted({Path(folder) / name for name in json.loads(index.read_text()).get("weight_map", {}).values()})
    return sorted(f for f in Path(folder).glob("*.safetensors") if not is_packed(f))


def weights_size(folder: Path) -> int:
    """Bytes of the checkpoint's weight files (any format), packed cache files left out."""
    return sum(f.stat().st_size for f in Path(folder).iterdir()
               if f.is_file() and f.suffix in WEIGHT_SUFFIXES and not is_packed(f))
