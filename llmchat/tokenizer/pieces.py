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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelRejected
from ..hf_folder import context_length, folder_special_names, read_json

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
    own = getattr(tokenizer, "token_bytes", None)  # a remote engine's tokenizer knows the server's bytes
    if own is not None:
        return own(token_id)
    raw = _raw(tokenizer)
    piece = raw.id_to_token(token_id)
    return piece_bytes(piece, decoder_kind(raw)) if piece is not None else b""


# ---------------------------------------------------------------------------- a model's tokenizer, for `tokenize`

@dataclass(frozen=True)
class Piece:
    """One token of a text, as the model sees it.

    `piece` is the token as the vocabulary stores it ("Ġworld", "▁world", "<0xF0>", "<|im_start|>");
    `data` the bytes it contributes to the text; `start`/`end` are character offsets into the text
    (a token holding part of a character spans that whole character; a token the tokenizer adds
    itself, like BOS, spans nothing). `special` marks added tokens: control tokens such as BOS/EOS,
    `<|im_start|>`, and added text tokens such as `<think>`. `added` marks tokens the tokenizer's
    post-processor put around the text (BOS).
    """

    index: int
    id: int
    piece: str
    data: bytes
    start: int
    end: int
    special: bool = False
    added: bool = False

    @property
    def text(self) -> str | None:
        """The characters this token contributes, or None when its bytes are not whole characters."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass
class Tokenized:
    """A text cut into tokens by one model: what every `tokenize` view renders.

    `generation_index` is the index of the first token of the generation prompt in a chat render
    (None otherwise); `notes` are short remarks for the summary line.
    """

    model: str
    text: str
    pieces: list[Piece]
    context_length: int
    bos_added: bool = False
    generation_index: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ModelTokenizer:
    """A model's tokenizer read from its folder with the `tokenizers` library alone.

    `names` holds the named special tokens from tokenizer_config.json (bos_token, eos_token, …),
    `context_length` the model's context window, `bos_added` whether encoding a text puts the BOS
    token in front of it (the tokenizer's post-processor does that, not the chat template).
    """

    tokenizer: Any
    folder: Path
    names: dict[str, str]
    context_length: int
    added_ids: frozenset[int] = frozenset()
    _missing: frozenset[int] | None = field(default=None, repr=False)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def kind(self) -> str:
        return decoder_kind(self.tokenizer)

    @property
    def bos_added(self) -> bool:
        bos = self.names.get("bos_token")
        first = self.tokenizer.encode("", add_special_tokens=True).ids[:1]
        return bos is not None and first == [self.tokenizer.token_to_id(bos)]

    def encode(self, text: str, special: bool = False, add_special_tokens: bool = True) -> list[Piece]:
        """The tokens of `text`. special=False treats special-token strings in it as plain text."""
        self.tokenizer.encode_special_tokens = not special
        encoding = self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        ids, tokens, added = encoding.ids, encoding.tokens, encoding.special_tokens_mask
        data = [self._bytes(i, t) for i, t in zip(ids, tokens)]
        inner = [d for d, a in zip(data, added) if not a]
        if b"".join(inner) == text.encode("utf-8", "surrogatepass"):
            # Offsets from the bytes themselves: exact, and the same for every decoder.
            spans = iter(char_spans(inner))
            offsets = [(0, 0) if a else next(spans) for a in added]
        else:  # a normaliser or an added prefix space changed the text: trust the tokenizer's offsets
            offsets = list(encoding.offsets)
        return [Piece(n, i, t, d, s, e, i in self.added_ids, bool(a))
                for n, (i, t, d, (s, e), a) in enumerate(zip(ids, tokens, data, offsets, added))]

    def from_ids(self, ids: list[int]) -> tuple[str, list[Piece]]:
        """Ids back to text (special tokens kept), with each token's piece, bytes and offsets."""
        text = self.decode(ids)
        tokens = [self.tokenizer.id_to_token(i) for i in ids]
        data = [self._bytes(i, t) for i, t in zip(ids, tokens)]
        spans = char_spans(data)
        joined = b"".join(data).decode("utf-8", "replace")
        # SentencePiece decoders drop the leading space of the first token; shift the offsets with it.
        shift = len(joined) - len(text) if joined != text and joined.endswith(text) else 0
        return text, [Piece(n, i, t, d, max(s - shift, 0), max(e - shift, 0), i in self.added_ids)
                      for n, (i, t, d, (s, e)) in enumerate(zip(ids, tokens, data, spans))]

    def unencodable(self, text: str) -> list[str]:
        """Characters of `text` that no token can spell, in order of appearance: a byte-level
        vocabulary that lacks a byte (smollm2 has no token for 0xF1, so U+40000 is dropped)."""
        if self.kind != "bytelevel":
            return []
        if self._missing is None:
            vocab = self.tokenizer.get_vocab(with_added_tokens=False)
            self._missing = frozenset(b for ch, b in byte_decoder().items() if ch not in vocab)
        return list(dict.fromkeys(ch for ch in text if not self._missing.isdisjoint(ch.encode("utf-8"))))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False) if ids else ""

    def _bytes(self, token_id: int, token: str) -> bytes:
        # An added token is stored as its plain text, whatever the decoder does with vocabulary pieces.
        if token_id in self.added_ids:
            return token.encode("utf-8")
        return piece_bytes(token, self.kind)


def char_spans(data: list[bytes]) -> list[tuple[int, int]]:
    """Character offsets of consecutive byte strings in the UTF-8 text they form together.

    A token holding part of a character spans the whole character; so do its neighbours that hold
    the rest (the three tokens of "🦙" in smollm2 all span it).
    """
    starts: list[int] = []  # character index of each byte of the joined text
    count = -1
    for chunk in data:
        for byte in chunk:
            if byte & 0xC0 != 0x80 or count < 0:  # not a continuation byte: a new character
                count += 1
            starts.append(count)
    spans, pos = [], 0
    for chunk in data:
        if chunk:
            spans.append((starts[pos], starts[pos + len(chunk) - 1] + 1))
        else:
            spans.append((starts[pos] if pos < len(starts) else count + 1,) * 2)
        pos += len(chunk)
    return spans


def open_tokenizer(folder: Path, context: int | None = None) -> ModelTokenizer:
    """Read tokenizer.json (+ tokenizer_config.json, config.json) from a model folder.

    Does what transformers 5 does on top of tokenizer.json, so that ids match `AutoTokenizer`: the
    named special tokens of tokenizer_config.json become special added tokens. BOS comes from
    tokenizer.json's post-processor alone (transformers ignores `add_bos_token` when there is a
    tokenizer.json).
    """
    from tokenizers import AddedToken, Tokenizer

    folder = Path(folder)
    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # the Rust side raises plain Exceptions for unreadable files
        raise ModelRejected(f"cannot read {folder / 'tokenizer.json'}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                            "the tokenizer file is corrupt or of an unsupported kind") from None
    config = read_json(folder / "config.json")
    names = folder_special_names(folder)
    present = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    missing = [AddedToken(v, special=True, normalized=False) for v in names.values() if v not in present]
    if missing:
        tokenizer.add_special_tokens(missing)
    return ModelTokenizer(tokenizer=tokenizer, folder=folder, names=names,
                          context_length=context or context_length(config),
                          added_ids=frozenset(tokenizer.get_added_tokens_decoder()))
