"""Token pieces as bytes and text, from the `tokenizers` library alone (no torch import).

Vocabularies store tokens in an encoded form: byte-level BPE maps each byte to a printable
character ("Ġ" is a space, "ðŁ" two bytes of an emoji); SentencePiece uses "▁" for a space and
"<0xF0>" tokens for raw bytes. `token_bytes` undoes that, so a piece can be shown as the bytes it
really contributes — never as mojibake.
"""

from __future__ import annotations

import json
import re
import weakref
from functools import lru_cache

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def _raw(tokenizer):
    """A `tokenizers.Tokenizer` from either that or a transformers tokenizer."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


_KINDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def decoder_kind(tokenizer) -> str:
    """"bytelevel", "sentencepiece" or "plain", from the tokenizer's decoder."""
    raw = _raw(tokenizer)
    kind = _KINDS.get(raw)
    if kind is None:
        decoder = raw.decoder
        state = json.loads(decoder.__getstate__()) if decoder is not None else {}
        text = json.dumps(state)
        if '"ByteLevel"' in text:
            kind = "bytelevel"
        elif '"Metaspace"' in text or '"ByteFallback"' in text or "\u2581" in text:
            kind = "sentencepiece"
        else:
            kind = "plain"
        _KINDS[raw] = kind
    return kind


def piece_bytes(piece: str, kind: str) -> bytes:
    if kind == "bytelevel":
        table = byte_decoder()
        if all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
        return piece.encode("utf-8")  # an added token stored as plain text (e.g. "<think>")
    if kind == "sentencepiece":
        match = _BYTE_TOKEN.match(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        return piece.replace("\u2581", " ").encode("utf-8")
    return piece.encode("utf-8")


def token_bytes(tokenizer, token_id: int) -> bytes:
    raw = _raw(tokenizer)
    piece = raw.id_to_token(token_id)
    return piece_bytes(piece, decoder_kind(raw)) if piece is not None else b""
