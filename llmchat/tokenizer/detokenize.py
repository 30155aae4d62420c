"""Incremental detokenization that never emits half a UTF-8 character.

Byte-level BPE splits one character over several tokens (smollm2 cuts "🦙" into 3), and
SentencePiece tokens carry a leading-space marker that `decode` strips at the start of a text.
Decoding each token on its own gets both wrong, and decoding the whole answer at every step is
quadratic. We decode a short sliding window instead (the scheme of vLLM / text-generation-
inference): the text of the window [prefix, read) is already emitted; the new text is
decode(window + new tokens) minus decode(window). While the new text ends in U+FFFD (an
incomplete character), nothing is emitted and the tokens stay in the window. The concatenation of
all deltas plus `flush()` equals `tokenizer.decode(all_ids, skip_special_tokens=True)`.
"""

from __future__ import annotations

from ..prefixes import common_prefix


class IncrementalDetokenizer:
    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # tokens before this index are emitted

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip) if ids else ""

    @property
    def holding(self) -> bool:
        """True when tokens wait for the rest of a character."""
        return self._read < len(self.ids)

    def add(self, token_id: int) -> str:
        """Feed one token; returns the text it completes (possibly "")."""
        self.ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held (an incomplete character decodes to U+FFFD here)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if not self.holding:
            return ""
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        if not final and (len(after) <= len(before) or after.endswith("\ufffd")):
            return ""
        if not after.startswith(before):  # a decoder that rewrote the window: emit what is new
            before = before[:common_prefix(before, after)]
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before):]
