"""The `tokenizer.Tokenizer` protocol for a remote engine.

The server is the authority on text → ids: `encode` and the chat template go to its endpoints
where it has them, so the ids llmchat sends are the ids the server would make. Ids → text and
pieces come from a local tokenizer when the models.toml entry names one (`tokenizer = ALIAS |
FOLDER | REPO`: exact vocabulary pieces such as "Ġthe"); otherwise from the bytes the server
reported for each id (llama.cpp sends them with every token), learned as they arrive, and from
`/detokenize` for an id never seen.

A text-level server (engine "openai": chat completions take messages and return token strings)
has no ids at all. Its "ids" are `TEXT_ID` placeholders, as many as the prompt's estimated
tokens, so that context accounting works; `RemoteEngine.generate` sends the messages the last
template call recorded, and refuses ids it did not make (a /branch, `next`, `tokenize`).
"""

from __future__ import annotations

from typing import Any

from ..errors import LlmchatError
from .base import Capabilities, Engine

TEXT_ID = -1  # the id of every token of a text-level server (`null` in --json)


def text_level_error(engine: str) -> LlmchatError:
    """The one refusal of token-level work on a text-level server."""
    return LlmchatError(f"{engine} servers work at text level: prompts are messages, not token ids "
                        "(/branch, `next`, `tokenize` and --raw need ids)",
                        "use a llama.cpp, vLLM or SGLang server for token-level work")


class RemoteTokenizer:
    def __init__(self, engine: Engine, caps: Capabilities, local=None):
        self.engine, self.caps, self.local = engine, caps, local
        self.text_level = not caps.token_ids
        self.recorded: tuple[list[int], list[dict]] | None = None  # text level: the last rendered conversation
        self._bytes: dict[int, bytes] = {}
        self._text: dict[int, str] = {}
        self._special: set[int] = set(local.all_special_ids) if local is not None else set()
        self.eos_token_id = local.eos_token_id if local is not None else None
        if local is None and caps.server_tokenize:
            for name in (caps.bos, caps.eos):
                if name:
                    ids = engine.tokenize(caps, name, False)
                    if len(ids) == 1:
                        self._special.add(ids[0])
                        self._text[ids[0]] = name
                        self._bytes[ids[0]] = b""
                        if name == caps.eos:
                            self.eos_token_id = ids[0]
        self.chat_template = caps.chat_template or (local.chat_template if local is not None else None) \
            or ("(applied by the server)" if caps.server_template else None)

    @property
    def all_special_ids(self) -> list[int]:
        return sorted(self._special)

    @property
    def backend_tokenizer(self) -> Any:
        if self.local is None:
            raise LlmchatError(f"{self.caps.engine} gives no vocabulary file",
                               "set `tokenizer =` in the models.toml entry for exact token pieces")
        return self.local.backend_tokenizer

    # ------------------------------------------------------------------ what the server reports
    def learn(self, token_id: int, data: bytes | None, text: str | None) -> None:
        if data is not None and token_id not in self._bytes:
            self._bytes[token_id] = data
            if data == b"" and self.local is None:
                self._special.add(token_id)  # llama-server sends control tokens with no bytes
        if text is not None and token_id not in self._text:
            self._text[token_id] = text

    def token_bytes(self, token_id: int) -> bytes:
        if self.local is not None:
            from ..tokenizer.pieces import token_bytes

            return token_bytes(self.local, token_id)
        if token_id not in self._bytes:
            self._bytes[token_id] = self.engine.detokenize(self.caps, [token_id]).encode("utf-8")
        return self._bytes[token_id]

    # ------------------------------------------------------------------ the protocol
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self.text_level:
            raise text_level_error(self.caps.engine)
        if self.caps.server_tokenize:
            return self.engine.tokenize(self.caps, text, add_special_tokens)
        if self.local is not None:
            return list(self.local.encode(text, add_special_tokens=add_special_tokens))
        raise LlmchatError(f"{self.caps.engine} cannot tokenize", "set `tokenizer =` in the models.toml entry")

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids if int(i) != TEXT_ID]
        if self.text_level and not ids:
            return ""
        if self.local is not None:
            return self.local.decode(ids, skip_special_tokens=skip_special_tokens)
        if not skip_special_tokens and any(i in self._special for i in ids):
            return self.engine.detokenize(self.caps, ids)
        return b"".join(self.token_bytes(i) for i in ids if i not in self._special).decode("utf-8", "replace")

    def convert_ids_to_tokens(self, ids):
        if self.local is not None:
            return self.local.convert_ids_to_tokens(ids)
        if isinstance(ids, int):
            return self._piece(ids)
        return [self._piece(int(i)) for i in ids]

    def _piece(self, token_id: int) -> str:
        if token_id == TEXT_ID:
            return ""
        if token_id not in self._text or (token_id in self._special and not self._text[token_id]):
            self._text[token_id] = self.engine.detokenize(self.caps, [token_id])
        return self._text[token_id]

    def apply_chat_template(self, messages, add_generation_prompt: bool = False, tokenize: bool = True,
                            return_dict: bool = False, **kwargs):
        if self.text_level:
            return self._record(list(messages), add_generation_prompt)
        if self.caps.server_template:
            ids = self.engine.template_ids(self.caps, list(messages), add_generation_prompt)
            return ids if tokenize else self.decode(ids)
        if self.local is not None:
            return self.local.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                  tokenize=tokenize, return_dict=return_dict, **kwargs)
        raise LlmchatError(f"{self.caps.engine} cannot apply the chat template",
                           "set `tokenizer =` in the models.toml entry")

    def _record(self, messages: list[dict], add_generation_prompt: bool) -> list[int]:
        """Text level: placeholders, one per estimated token (the local tokenizer's count when the
        entry names one, else UTF-8 bytes / 4 plus 4 per message); the server's own count comes
        back in its usage report."""
        if self.local is not None:
            count = len(self.local.apply_chat_template(messages, add_generation_prompt=add_generation_prompt))
        else:
            count = sum(len(str(m.get("content", "")).encode("utf-8")) for m in messages) // 4 + 4 * len(messages)
        ids = [TEXT_ID] * max(1, count)
        if add_generation_prompt:
            self.recorded = (ids, messages)
        return ids

    def messages_for(self, ids: list[int]) -> list[dict]:
        """The conversation whose placeholders `ids` are (text level), or a clear refusal."""
        if self.recorded is None or list(ids) != self.recorded[0]:
            raise text_level_error(self.caps.engine)
        return self.recorded[1]

    def get_vocab(self) -> dict[str, int]:
        return self.local.get_vocab() if self.local is not None else {}
