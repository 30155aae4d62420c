"""What `llmchat tokenize` shows: a text, a conversation or a list of ids cut into `Piece`s by one
model's tokenizer, with the notes a reader needs (characters no token can spell, special-token
strings read as text, the template used). The command only parses options and picks a view."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError
from .pieces import ModelTokenizer, Tokenized, open_tokenizer
from .templates import load_template

_ID_SEPARATORS = re.compile(r"[\s,]+")


def parse_ids(text: str) -> list[int]:
    """'1 2 3', '1,2,3' or '[1, 2, 3]' → [1, 2, 3]; anything else names the bad item."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    result = []
    for item in _ID_SEPARATORS.split(body.strip()):
        if not item:
            continue
        if not item.isdigit() or not item.isascii():
            raise UsageError(f"--decode: {item!r} is not a token id", 'give non-negative integers, e.g. "1 2 3"')
        result.append(int(item))
    return result


def tokenize(spec, folder: Path, *, text: str | None = None, conversation: list[dict] | None = None,
             ids: list[int] | None = None, special: bool = False) -> Tokenized:
    """One of: `ids` decoded, `conversation` rendered through the chat template, or `text`."""
    tokenizer = open_tokenizer(folder, spec.context)
    if ids is not None:
        return decode_ids(spec, tokenizer, ids)
    if conversation is not None:
        return tokenize_chat(spec, folder, tokenizer, conversation)
    pieces = tokenizer.encode(text, special=special)
    notes = _lost(tokenizer, text, pieces)
    controls = [t for t in _special_strings(tokenizer) if t in text]
    if controls and not special:
        notes.append(f"{controls[0]} read as plain text (--special to read it as a special token)")
    return Tokenized(spec.alias, text, pieces, tokenizer.context_length,
                     bos_added=bool(pieces) and pieces[0].added, notes=notes)


def decode_ids(spec, tokenizer: ModelTokenizer, ids: list[int]) -> Tokenized:
    size = tokenizer.vocab_size
    for token_id in ids:
        if tokenizer.tokenizer.id_to_token(token_id) is None:
            raise UsageError(f"--decode: token id {token_id} is not in the vocabulary of {spec.alias}",
                             f"its ids run from 0 to {size - 1}")
    decoded, pieces = tokenizer.from_ids(ids)
    return Tokenized(spec.alias, decoded, pieces, tokenizer.context_length)


def tokenize_chat(spec, folder: Path, tokenizer: ModelTokenizer, conversation: list[dict]) -> Tokenized:
    template = load_template(folder, spec)
    prompt = template.render(conversation, add_generation_prompt=True)
    start = template.generation_prompt_start(conversation)
    # As transformers' apply_chat_template: the template writes BOS itself, and every control
    # token in the rendered prompt is special (also one typed inside a message).
    pieces = tokenizer.encode(prompt, special=True, add_special_tokens=False)
    index = next((p.index for p in pieces if p.end > start), None) if start is not None else None
    notes = [f"template: {template.origin}", *_lost(tokenizer, prompt, pieces)]
    controls = [t for t in _special_strings(tokenizer) if any(t in m["content"] for m in conversation)]
    if controls:
        notes.append(f"a message contains {controls[0]}, tokenized as a special token")
    return Tokenized(spec.alias, prompt, pieces, tokenizer.context_length, generation_index=index, notes=notes)


def _lost(tokenizer: ModelTokenizer, text: str, pieces) -> list[str]:
    """A note when the tokens do not spell the text: characters the vocabulary cannot encode."""
    if b"".join(p.data for p in pieces if not p.added) == text.encode("utf-8"):
        return []
    lost = tokenizer.unencodable(text)
    if not lost:
        return ["the tokens do not spell the text exactly (the tokenizer normalises it)"]
    shown = ", ".join(f"U+{ord(ch):04X}" for ch in lost[:3]) + (", …" if len(lost) > 3 else "")
    return [f"no token for {shown}: dropped from the ids"]


def _special_strings(tokenizer: ModelTokenizer) -> list[str]:
    added = tokenizer.tokenizer.get_added_tokens_decoder().values()
    return sorted((t.content for t in added if t.special), key=len, reverse=True)
