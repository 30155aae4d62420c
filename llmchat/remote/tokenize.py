"""`llmchat tokenize` over a remote engine: the server cuts the text (its `/tokenize`) and
renders the chat template (its own endpoint), so what is shown is what the server will compute
on; the result is the same `Tokenized` the local views draw."""

from __future__ import annotations

from ..errors import LlmchatError, UsageError
from ..tokenizer.pieces import Piece, Tokenized, char_spans
from .source import RemoteEngine
from .tokenizer import text_level_error


def tokenize(source: RemoteEngine, *, text: str | None = None, conversation: list[dict] | None = None,
             ids: list[int] | None = None, special: bool = False) -> Tokenized:
    caps, engine, tok = source.caps, source.adapter, source.tokenizer
    alias = source.spec.alias
    if ids is not None:
        source._check_ids(ids)
        decoded = tok.decode(ids, skip_special_tokens=False)
        data = [tok.token_bytes(i) if i not in tok._special else tok.convert_ids_to_tokens(i).encode("utf-8")
                for i in ids]
        return Tokenized(alias, decoded, _pieces(tok, ids, data, char_spans(data), ()), source.context_length)
    if not caps.token_ids:
        raise text_level_error(caps.engine)
    if not caps.server_tokenize:
        raise LlmchatError(f"{caps.engine} has no tokenize endpoint",
                           "set `tokenizer =` in the models.toml entry to tokenize with the model's own tokenizer here")
    notes = [f"tokenized by {caps.engine} at {source.spec.location}"]
    generation_index = None
    if conversation is not None:
        prompt = engine.template_text(caps, conversation, True)
        if prompt is None:
            raise UsageError(f"{caps.engine} does not show its rendered template", "use --chat with the local model")
        before = engine.template_text(caps, conversation, False) or ""
        generation_index_at = len(before) if prompt.startswith(before) else None
        text, parse_special, add_special = prompt, True, True
        notes.append(f"template: the server's ({caps.engine} /apply-template)")
    else:
        generation_index_at, parse_special, add_special = None, special, True
    rows = engine.tokenize_pieces(caps, text, add_special, parse_special)
    ids = [i for i, _ in rows]
    data = [d if d is not None else tok.token_bytes(i) for i, d in rows]
    added = _added(tok, text, ids, data)
    inner = [d for d, a in zip(data, added) if not a]
    spans = iter(char_spans(inner))
    offsets = [(0, 0) if a else next(spans) for a in added]
    if b"".join(inner) != text.encode("utf-8", "surrogatepass"):
        notes.append("the tokens do not spell the text exactly")
    pieces = _pieces(tok, ids, data, offsets, added)
    if generation_index_at is not None:
        generation_index = next((p.index for p in pieces if p.end > generation_index_at), None)
    return Tokenized(alias, text, pieces, source.context_length, bos_added=bool(added) and added[0],
                     generation_index=generation_index, notes=notes)


def _added(tok, text: str, ids: list[int], data: list[bytes]) -> list[bool]:
    """The BOS the server put in front of the text (it spells nothing of the text)."""
    out = [False] * len(ids)
    if ids and ids[0] in tok._special and not text.encode("utf-8").startswith(data[0] or b"\0"):
        out[0] = True
    return out


def _pieces(tok, ids, data, offsets, added) -> list[Piece]:
    names = tok.convert_ids_to_tokens(ids) if ids else []
    return [Piece(n, i, name, d, s, e, i in tok._special, bool(a))
            for n, (i, name, d, (s, e), a) in enumerate(zip(ids, names, data, offsets, added or [False] * len(ids)))]
