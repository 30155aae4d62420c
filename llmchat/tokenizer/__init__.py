"""Text ↔ token ids without torch: token pieces and their bytes (`pieces`), the lite tokenizer
(`lite`), chat templates in jinja2's sandbox (`templates`), the incremental detokenizer
(`detokenize`) and what `llmchat tokenize` shows (`analysis`).

Nothing here imports torch or transformers (tests/test_architecture.py checks it): `llmchat
tokenize` starts in the time it takes to read tokenizer.json.
"""

from __future__ import annotations

from typing import Any, Protocol


class Tokenizer(Protocol):
    """What llmchat uses of a model's tokenizer. `lite.LiteTokenizer` and transformers' tokenizers
    both answer it (tests/test_lite_tokenizer.py checks that they answer alike)."""

    all_special_ids: list[int]
    eos_token_id: int | None
    chat_template: str | None
    backend_tokenizer: Any  # the `tokenizers.Tokenizer` underneath (token pieces and bytes read it)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids, skip_special_tokens: bool = False) -> str: ...

    def convert_ids_to_tokens(self, ids): ...

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                            tokenize: bool = True, return_dict: bool = False, **kwargs: Any): ...

    def get_vocab(self) -> dict[str, int]: ...
