"""How surprising is a given text to the model? Teacher-forced scoring, token by token.

The text's ids are fed to the model (in chunks, with the KV cache, so a long text costs one pass),
and at every position the model distribution over the next token is compared with the token that
really comes next: its probability, its rank among all tokens (1 = the model's first choice), the
entropy of the distribution and the top-K alternatives. This is the view of GLTR (Gehrmann,
Strobelt and Rush, 2019), whose rank buckets are used here: top-1, top-10, top-100, beyond.

The distribution is the model's own: softmax of the logits, no penalty, temperature or truncation
(the `prob` of `ask --json --logprobs`). A text longer than the context window is scored in
windows of `window` tokens, each starting `window // 2` tokens after the previous one: the first
window scores all of its tokens, every later window only its second half, so each token is scored
exactly once and (after the first window) with at least `window // 2` tokens of context before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import ContextOverflow, OutOfMemory, UsageError
from ..model.progress import SILENT, Progress
from ..tokenizer.detokenize import IncrementalDetokenizer
from ..tokenizer.pieces import token_bytes
from .events import TokenEvent

if TYPE_CHECKING:  # torch is imported where it is used: a Score read off the socket needs none
    import torch

    from ..model.load import LoadedModel

BUCKETS = ((1, "top-1"), (10, "top-10"), (100, "top-100"), (None, "beyond"))  # GLTR's rank buckets
CHUNK = 256  # tokens per forward call: bounds the logits held at once (CHUNK × vocab floats)


def bucket(rank: int) -> str:
    for limit, name in BUCKETS:
        if limit is None or rank <= limit:
            return name
    return BUCKETS[-1][1]


@dataclass(frozen=True)
class ScoredToken:
    """One token of the text: the event (prob, logprob, entropy, alternatives under the model
    distribution; `sample_prob` is NaN, nothing was sampled) and its rank in that distribution."""

    event: TokenEvent
    rank: int

    @property
    def bucket(self) -> str:
        return bucket(self.rank)


@dataclass
class Score:
    """The scored tokens of a text, `context` tokens before them (BOS, chat template, question)
    being given but not scored, and in how many windows it was computed."""

    tokens: list[ScoredToken] = field(default_factory=list)
    context: int = 0
    windows: int = 1

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per token, in nats."""
        values = [-t.event.logprob for t in self.tokens]
        return sum(values) / len(values) if values else math.nan

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll) if self.tokens else math.nan

    def shares(self) -> dict[str, float]:
        """The fraction of tokens in each rank bucket (top-1 … beyond)."""
        counts = {name: 0 for _, name in BUCKETS}
        for t in self.tokens:
            counts[t.bucket] += 1
        return {name: count / len(self.tokens) if self.tokens else 0.0 for name, count in counts.items()}

    def most_surprising(self, n: int = 5) -> list[ScoredToken]:
        """The n least probable tokens, least probable first."""
        return sorted(self.tokens, key=lambda t: t.event.logprob)[:n]


def score(loaded: LoadedModel, ids: list[int], start: int, *, alternatives: int = 5, window: int | None = None,
          chunk: int = CHUNK, progress: Progress = SILENT) -> Score:
    """Score ids[start:] given everything before it (`start` ≥ 1: the first token has no context).

    `window` (default: the context length) bounds the tokens the model sees at once; a text that
    does not fit is scored in overlapping windows (module docstring). Ctrl-C (KeyboardInterrupt)
    comes through between chunks."""
    ids = list(ids)
    if start < 1:
        raise UsageError("the first token has no context to be scored in", "score from position 1")
    if start >= len(ids):
        raise UsageError("the text is one token, and a first token has no context to be scored in"
                         if start == 1 and len(ids) == 1 else "there is no text to score", "give a longer text")
    limit = loaded.context_length
    window = window or limit
    if window > limit:
        raise ContextOverflow(f"a window of {window} tokens is larger than the context ({limit})",
                              f"use --window {limit} or less")
    if window < 2 or start >= window:
        raise ContextOverflow(f"the text starts at token {start}, after its context, and a window holds {window}",
                              "shorten the prompt before the text, or use a larger --window")
    model, tokenizer = loaded.model, loaded.tokenizer
    special = set(tokenizer.all_special_ids)
    result = Score(context=start)
    stride = window // 2
    spans = [(0, min(len(ids), window), start)]  # (window start, window end, first position scored)
    while spans[-1][1] < len(ids):
        begin = spans[-1][1] - window + stride
        spans.append((begin, min(len(ids), begin + window), spans[-1][1]))
    result.windows = len(spans)
    detok = IncrementalDetokenizer(tokenizer)
    if len(ids) - start <= 4 * chunk:  # a short text is scored before a bar would be worth drawing
        progress = SILENT
    with progress.bar(f"scoring {len(ids) - start} tokens", len(ids) - start) as advance:
        for begin, end, first in spans:
            kv, done = None, begin
            while done < end - 1:  # positions done..end-2 predict tokens done+1..end-1
                upto = min(end - 1, done + chunk)
                logits, kv = _logits(model, ids[done:upto], kv, len(ids))
                for row, position in enumerate(range(done, upto)):
                    target = position + 1
                    if target >= first:
                        result.tokens.append(_scored(logits[row], ids[target], len(result.tokens), tokenizer,
                                                     special, detok, alternatives))
                advance(max(0, upto + 1 - max(done + 1, first)))
                done = upto
    tail = detok.flush()
    if tail and result.tokens:
        last = result.tokens[-1]
        result.tokens[-1] = ScoredToken(replace(last.event, text=last.event.text + tail), last.rank)
    return result


def _logits(model, ids: list[int], kv, total: int):
    import torch

    from .loop import prompt_flag

    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=model.device), cache=kv, use_cache=True, logits_to_keep=0,
                        **prompt_flag(model))  # a given text is computed as a prompt is
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(f"out of memory while scoring {total} tokens", "use a smaller --window") from None
    return torch.log_softmax(out.logits[0].float(), dim=-1).cpu(), out.cache


def _scored(logprobs: torch.Tensor, token: int, index: int, tokenizer, special: set, detok, k: int) -> ScoredToken:
    import torch

    logprob = float(logprobs[token])
    rank = int((logprobs > logprobs[token]).sum()) + 1
    from .loop import top_alternatives

    probs = logprobs.exp()
    alts = top_alternatives(tokenizer, probs, k)
    is_special = token in special
    event = TokenEvent(index=index, id=token, piece=tokenizer.convert_ids_to_tokens(token),
                       bytes=b"" if is_special else token_bytes(tokenizer, token),
                       text="" if is_special else detok.add(token), is_special=is_special,
                       prob=math.exp(logprob), logprob=logprob, sample_prob=math.nan,
                       entropy=float(torch.special.entr(probs).sum()), alternatives=alts)
    return ScoredToken(event, rank)
