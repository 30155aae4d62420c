"""The state of a chat and the operations on it. No terminal I/O here: the REPL renders.

A conversation is a system prompt plus a list of exchanges (user text, the model's answer with
its per-token events). What the model receives is the chat template applied to all of it (the
source's `render`); a LocalModel's PromptCache makes each new turn prefill only the new tokens.
The session talks to the model only through `engine.source.ModelSource`.

Thinking is split here, once per answer: each event's (channel, text) pieces are kept on the
exchange, and the REPL draws them without splitting again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from ..engine.events import Alternative, Finished, TokenEvent
from ..engine.sampling import SamplingParams
from ..engine.source import ModelSource
from ..errors import ContextOverflow, LlmchatError, UsageError
from ..prompt.build import opens_thinking
from ..prompt.thinking import ThinkSplitter
from ..tokenizer.detokenize import IncrementalDetokenizer
from ..tokenizer.pieces import token_bytes

Pieces = list[tuple[str, str]]  # (channel, text) — what one delta of the answer adds to each channel

SETTABLE = {"temperature": float, "top_p": float, "top_k": int, "min_p": float, "repetition_penalty": float,
            "max_tokens": int, "seed": int}


def unshow(text: str) -> str:
    """Text as /inspect shows it (␣ space, ↵ newline, → tab) back to the text itself."""
    return text.replace("␣", " ").replace("↵", "\n").replace("→", "\t")


def set_example(key: str) -> str:
    """A value that fits the setting, for hints."""
    return {"seed": "42", "max_tokens": "256", "top_k": "40", "repetition_penalty": "1.1"}.get(key, "0.7")


@dataclass
class Exchange:
    """One user message and the model's answer to it.

    raw:      the full text the model wrote (thinking and markers included) — what the chat
              template receives back as the assistant message, so that the template decides
              whether reasoning is shown to the model again.
    answer / thinking: `raw` split by the think markers.
    events:   the per-token data of the answer (for /inspect, /branch and saving).
    splits:   for each event, its pieces and the channel the split is in after it (for the REPL);
    tail:     the pieces held back at the end (a possible partial marker), known when it finished.
    """

    user: str
    raw: str = ""
    answer: str = ""
    thinking: str = ""
    events: list[TokenEvent] = field(default_factory=list)
    splits: list[tuple[Pieces, str]] = field(default_factory=list, repr=False, compare=False)
    tail: Pieces = field(default_factory=list, repr=False, compare=False)
    finished: Finished | None = None
    interrupted: bool = False


@dataclass
class Session:
    """The model (any ModelSource), the conversation, sampling settings and view settings."""

    source: ModelSource
    params: SamplingParams
    system: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    view: str = "text"
    think: str = "show"  # show: stream reasoning then collapse; hide: only the one-line summary
    alternatives: int = 5
    should_stop: Callable[[], bool] | None = None  # set by the REPL while an answer streams (Ctrl-C)
    on_prefill: Callable[[int, int], None] | None = None  # set by the REPL: a long prompt's progress
    _context_memo: tuple = field(default=(None, 0), repr=False)
    notices: list[str] = field(default_factory=list)  # things the REPL must tell the user

    # ------------------------------------------------------------------ prompt building
    def messages(self, upto: int | None = None) -> list[dict]:
        """The conversation as chat messages; `upto` exchanges, the last one's answer left out."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        exchanges = self.exchanges if upto is None else self.exchanges[:upto]
        for i, ex in enumerate(exchanges):
            out.append({"role": "user", "content": ex.user})
            if upto is None or i < len(exchanges) - 1:
                out.append({"role": "assistant", "content": ex.raw})
        return out

    def prompt_ids(self) -> list[int]:
        """Token ids for answering the last exchange (its answer left out)."""
        return self.source.render(self.messages(upto=len(self.exchanges)))

    def context_used(self) -> int:
        """Tokens the conversation takes now (the toolbar asks at every redraw: memoised on what
        it depends on)."""
        key = (self.source.spec, self.system, tuple((ex.user, ex.raw) for ex in self.exchanges))
        if self._context_memo[0] != key:
            msgs = self.messages()
            used = len(self.source.render(msgs, add_generation_prompt=False)) if msgs else 0
            self._context_memo = (key, used)
        return self._context_memo[1]

    def fit_context(self) -> list[int]:
        """Drop the oldest whole exchanges (never the system prompt, never the new message) until
        the prompt plus max tokens fits; a notice says what was dropped. When even the new message
        alone does not fit, nothing is dropped and ContextOverflow is raised."""
        limit, budget = self.source.context_length, self.params.max_new_tokens
        kept = list(self.exchanges)
        ids = self.prompt_ids()
        while len(ids) + budget > limit and len(self.exchanges) > 1:
            self.exchanges.pop(0)
            ids = self.prompt_ids()
        if len(ids) + budget > limit:
            self.exchanges[:] = kept
            raise ContextOverflow(f"the message is {len(ids)} tokens after the chat template; the context is {limit} "
                                  f"(with max-tokens {budget})", "shorten it, or lower max_tokens with /set max_tokens N")
        dropped = len(kept) - len(self.exchanges)
        if dropped:
            self.notices.append(f"context full: dropped the oldest {dropped} exchange{'s' * (dropped > 1)} "
                                f"(prompt now {len(ids)} + {budget} max tokens of {limit})")
        return ids

    # ------------------------------------------------------------------ turns
    def ask(self, text: str) -> Iterator[TokenEvent | Finished]:
        """Add a user message and stream the answer (the exchange is updated as tokens arrive)."""
        self.exchanges.append(Exchange(user=text))
        try:
            ids = self.fit_context()
        except LlmchatError:  # too long, or the chat template rejected it: the message is not kept
            self.exchanges.pop()
            raise
        return self._stream(self.exchanges[-1], ids, prefix_events=[])

    def retry(self) -> Iterator[TokenEvent | Finished]:
        if not self.exchanges:
            raise UsageError("nothing to retry yet", "send a message first")
        last = self.exchanges[-1]
        self.exchanges[-1] = Exchange(user=last.user)
        self.params = replace(self.params, seed=(self.params.seed or 0) + 1)  # a new sample, still reproducible
        return self._stream(self.exchanges[-1], self.fit_context(), prefix_events=[])

    def undo(self) -> Exchange:
        if not self.exchanges:
            raise UsageError("nothing to undo", "the conversation is empty")
        return self.exchanges.pop()

    def clear(self) -> None:
        self.exchanges.clear()
        self.source.forget()

    def branch(self, index: int, alternative: str) -> Iterator[TokenEvent | Finished]:
        """Rewind the last answer to before token `index`, force `alternative` (an index into that
        token's alternatives, or a literal string) and continue generating from there."""
        if not getattr(self.source, "token_ids", True):  # a text-level server (remote engine "openai")
            raise UsageError("/branch needs token ids, and this server works at text level",
                             "branch on a llama.cpp, vLLM or SGLang server, or a local model")
        if not self.exchanges or not self.exchanges[-1].events:
            raise UsageError("no answer to branch from", "send a message first")
        last = self.exchanges[-1]
        if not 0 <= index < len(last.events):
            raise UsageError(f"token {index} does not exist; the last answer has {len(last.events)} tokens",
                             "see /inspect for the indices")
        forced = self._forced_tokens(last.events[index], alternative)
        detok = IncrementalDetokenizer(self.source.tokenizer)  # re-derive the text of kept + forced tokens
        prefix = [replace(e, index=i, text="" if e.is_special else detok.add(e.id))
                  for i, e in enumerate(last.events[:index] + forced)]
        # a character the prefix leaves unfinished (a forced byte of an emoji) is not flushed into
        # U+FFFD: the generation continues the prefix's text and completes it
        self.exchanges[-1] = Exchange(user=last.user, events=list(prefix))
        ids = self.prompt_ids() + [e.id for e in prefix]
        if len(ids) >= self.source.context_length:
            raise ContextOverflow("the branch point is at the end of the context", "branch earlier")
        return self._stream(self.exchanges[-1], ids, prefix_events=prefix)

    def _forced_tokens(self, event: TokenEvent, alternative: str) -> list[TokenEvent]:
        tokenizer = self.source.tokenizer
        if alternative.isdigit():
            pick = int(alternative)
            if not 0 <= pick < len(event.alternatives):
                raise UsageError(f"alternative {pick} does not exist; token {event.index} has {len(event.alternatives)}",
                                 "see /inspect N for the list, or give a literal string in quotes")
            alts: tuple[Alternative, ...] = (event.alternatives[pick],)
        else:
            quoted = len(alternative) >= 2 and alternative[0] == alternative[-1] == '"'
            literal = unshow(alternative[1:-1] if quoted else alternative)
            if not literal:
                raise UsageError("the alternative is empty", "give an index or a non-empty string")
            matches = [] if quoted else [a for a in event.alternatives if
                                         tokenizer.decode([a.id], skip_special_tokens=False) in (literal, " " + literal)]
            if len(matches) > 1:
                listed = ", ".join(f"{event.alternatives.index(a)}: {tokenizer.decode([a.id])!r}" for a in matches)
                raise UsageError(f"{alternative!r} matches {len(matches)} alternatives of token {event.index} ({listed})",
                                 "give the index, or the exact text in quotes (␣ for a space)")
            if matches:
                alts = (matches[0],)
            else:
                ids = tokenizer.encode(literal, add_special_tokens=False)
                known = {a.id: a.prob for a in event.alternatives}
                alts = tuple(Alternative(i, p, known.get(i, math.nan) if n == 0 else math.nan)
                             for n, (i, p) in enumerate(zip(ids, tokenizer.convert_ids_to_tokens(ids))))
        return [TokenEvent(index=0, id=a.id, piece=a.piece, bytes=token_bytes(tokenizer, a.id), text="",
                           is_special=False, prob=a.prob, logprob=math.log(a.prob) if a.prob > 0 else math.nan,
                           sample_prob=1.0, entropy=event.entropy if n == 0 else math.nan,
                           alternatives=event.alternatives if n == 0 else ())  # so that /branch N can pick again
                for n, a in enumerate(alts)]

    def _stream(self, exchange: Exchange, ids: list[int], prefix_events: list[TokenEvent]):
        """Generate into `exchange`; prefix events (kept + forced by /branch) come first, split now
        (before the first token), so that the REPL can draw them at once."""
        family = self.source.family
        splitter = ThinkSplitter(family.think_open, family.think_close,
                                 opens_thinking(self.source, ids[:len(ids) - len(prefix_events)]))
        exchange.events, exchange.splits = list(prefix_events), []
        for event in prefix_events:
            exchange.splits.append((splitter.feed(event.text), splitter.channel))
        return self._generate(exchange, ids, splitter)

    def _generate(self, exchange: Exchange, ids: list[int], splitter: ThinkSplitter):
        raw = ["".join(e.text for e in exchange.events)]
        finished = None
        try:
            continues = [e.id for e in exchange.events]  # the /branch prefix, whose text is shown already
            for item in self.source.generate(ids, self.params, alternatives=self.alternatives,
                                             should_stop=self.should_stop, on_prefill=self.on_prefill,
                                             continues=continues):
                if isinstance(item, Finished):
                    finished = item
                    break
                item = replace(item, index=len(exchange.events))
                exchange.events.append(item)
                exchange.splits.append((splitter.feed(item.text), splitter.channel))
                raw.append(item.text)
                yield item
        finally:
            exchange.tail = splitter.finish()
            exchange.raw, exchange.answer, exchange.thinking = "".join(raw), splitter.answer_text, splitter.thinking_text
            exchange.interrupted = finished is None or finished.reason == "interrupted"
            exchange.finished = finished
        if finished is not None:
            yield finished

    # ------------------------------------------------------------------ scoring
    def score(self, text: str = ""):
        """Score `text` as a plain document, or (no text) the last answer with the conversation
        before it as context: exactly the tokens the model wrote, not a re-tokenization."""
        from ..prompt.build import score_ids

        if text:
            ids, start = score_ids(self.source, text)
        else:
            if not self.exchanges or not self.exchanges[-1].events:
                raise UsageError("no answer to score yet", "send a message first, or give a text: /score TEXT")
            prefix = self.prompt_ids()
            ids, start = prefix + [e.id for e in self.exchanges[-1].events], len(prefix)
        return self.source.score(ids, start, alternatives=self.alternatives)

    # ------------------------------------------------------------------ settings
    def fit_settings(self) -> None:
        """Max tokens that the model's context cannot hold are lowered (to half the context), with a
        notice: a 256-token model after /model must not refuse every message."""
        limit = self.source.context_length
        if self.params.max_new_tokens >= limit:
            lowered = max(1, limit // 2)
            self.notices.append(f"max_tokens lowered from {self.params.max_new_tokens} to {lowered} to fit "
                                f"{self.source.spec.alias}'s {limit}-token context (/set max_tokens N to change it)")
            self.params = replace(self.params, max_new_tokens=lowered)

    def set(self, key: str, value: str) -> str:
        if key not in SETTABLE:
            raise UsageError(f"unknown setting {key!r}", f"settable: {', '.join(SETTABLE)}")
        try:
            number = SETTABLE[key](value)
        except ValueError:
            raise UsageError(f"{key} needs {'a whole number' if SETTABLE[key] is int else 'a number'}, not {value!r}",
                             f"e.g. /set {key} {set_example(key)}") from None
        field_name = "max_new_tokens" if key == "max_tokens" else key
        self.params = replace(self.params, **{field_name: number})  # validated by SamplingParams
        return f"{key} = {number}"

    def settings(self) -> dict[str, object]:
        """The settable values under their /set names."""
        named = self.params.to_dict()
        return {key: named[key] for key in SETTABLE}
