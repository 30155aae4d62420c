"""The part of a transformers tokenizer that llmchat uses, on the `tokenizers` library alone.

Why not `AutoTokenizer`: importing transformers and building its tokenizer costs ~1.9 s of a cold
`llmchat ask` (measured: 0.6 s import, 0.7 s config classes, 0.6 s tokenizer), more than the
model itself takes to load. The same files give the same ids through `pieces.open_tokenizer`
(transformers 5's treatment of tokenizer.json and the named special tokens) and
`templates.load_template` (transformers' sandboxed jinja environment);
tests/test_lite_tokenizer.py checks every method against AutoTokenizer.

Used when the folder has a tokenizer.json and no remote code; otherwise loading uses transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hf_folder import read_json
from .pieces import ModelTokenizer, open_tokenizer
from .templates import ChatTemplate, compile_template, load_template


class LiteTokenizer:
    """encode / decode / ids ↔ tokens / special ids / chat template, as transformers answers them."""

    def __init__(self, folder: Path, spec=None):
        model_tok: ModelTokenizer = open_tokenizer(folder)
        self.backend_tokenizer = model_tok.tokenizer
        config = read_json(Path(folder) / "tokenizer_config.json")
        self._names = model_tok.names
        extra = (config.get("extra_special_tokens") or config.get("additional_special_tokens")
                 or read_json(Path(folder) / "special_tokens_map.json").get("additional_special_tokens") or [])
        extra = [t.get("content") if isinstance(t, dict) else t for t in (extra.values() if isinstance(extra, dict) else extra)]
        ordered = list(dict.fromkeys([*self._names.values(), *(t for t in extra if isinstance(t, str))]))
        vocab = self.backend_tokenizer.get_vocab(with_added_tokens=True)
        self.all_special_tokens = [t for t in ordered if t in vocab]
        self.all_special_ids = [vocab[t] for t in self.all_special_tokens]
        self.eos_token = self._names.get("eos_token")
        self.eos_token_id = vocab.get(self.eos_token) if self.eos_token else None
        # transformers skips its space clean-up for BPE models (it would corrupt them).
        self._clean_up = bool(config.get("clean_up_tokenization_spaces")) and \
            type(self.backend_tokenizer.model).__name__ != "BPE"
        try:
            self._template: ChatTemplate | None = load_template(folder, spec, names=self._names)
        except Exception:  # no template (a base model), or one that does not compile: as transformers, fail on use
            self._template = None

    # ---- chat template
    @property
    def chat_template(self) -> str | None:
        return self._template.source if self._template else None

    @chat_template.setter
    def chat_template(self, source: str) -> None:
        compile_template(source, "chat_template")
        self._template = ChatTemplate(source=source, origin="chat_template",
                                      special_tokens=self._template.special_tokens if self._template else dict(self._names))

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                            tokenize: bool = True, return_dict: bool = False, **kwargs: Any):
        if self._template is None:
            raise ValueError("this tokenizer has no chat template")
        text = self._template.render(messages, add_generation_prompt=add_generation_prompt, **kwargs)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # ---- text ↔ ids
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.backend_tokenizer.encode_special_tokens = False  # special-token strings in the text are special
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = [ids] if isinstance(ids, int) else list(ids)
        text = self.backend_tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return _clean_up(text) if self._clean_up else text

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(i) for i in ids]

    def get_vocab(self, with_added_tokens: bool = True) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=with_added_tokens)

    def get_added_tokens_decoder(self):
        return self.backend_tokenizer.get_added_tokens_decoder()

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)


def _clean_up(text: str) -> str:
    """transformers' clean_up_tokenization (for WordPiece-style vocabularies)."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


def usable(folder: Path, spec) -> bool:
    """Can the lite tokenizer stand in for transformers' here?"""
    return (Path(folder) / "tokenizer.json").is_file() and not getattr(spec, "trust_remote_code", False)
