"""The decode loop: prefill, KV cache reused across calls, sampling, stop rules, timing.

`generate()` yields one `TokenEvent` per generated token, then one `Finished`. It never prints.
The caller may stop iterating at any time (generator close, Ctrl-C): the `PromptCache` always
describes exactly the tokens whose keys and values it holds, so the next call stays correct.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch

from ..errors import ContextOverflow, OutOfMemory, UsageError
from ..prefixes import common_prefix
from ..tokenizer.detokenize import IncrementalDetokenizer
from ..tokenizer.pieces import token_bytes
from .events import Alternative, Distribution, Finished, TokenEvent
from .sampling import SamplingParams, apply_repetition_penalty, make_generator, make_sampler
from .stops import StopReleaser

if TYPE_CHECKING:
    from ..model.load import LoadedModel


@dataclass
class PromptCache:
    """The KV cache of the previous call and the token ids it holds (prefix reuse across turns).

    Invariant: `kv` holds keys/values for exactly `tokens` (in order), or is None when empty.
    """

    kv: Any = None
    tokens: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.kv, self.tokens = None, []

    def reuse(self, input_ids: list[int]) -> int:
        """Cut the cache back to its longest common prefix with `input_ids` (leaving at least the
        last prompt token to compute, whose logits we need); returns the reused length."""
        common = min(common_prefix(self.tokens, input_ids), len(input_ids) - 1)
        if common == 0:
            self.reset()
        elif common < len(self.tokens):
            self.kv.crop(common - len(self.tokens))
            del self.tokens[common:]
        return common


PREFILL_CHUNK = 256  # prompt tokens per forward call: Ctrl-C and progress come between chunks


def generate(loaded: LoadedModel, input_ids: Iterable[int], params: SamplingParams, *, alternatives: int = 5,
             stop: Iterable[str] = (), cache: PromptCache | None = None,
             generator: torch.Generator | None = None,
             should_stop: Callable[[], bool] | None = None,
             on_prefill: Callable[[int, int], None] | None = None,
             continues: Iterable[int] = ()) -> Iterator[TokenEvent | Finished]:
    """Stream the answer to `input_ids` (already templated) token by token.

    Stops on any of `loaded.eos_ids` (reason "eos"), a stop string from `params.stop` or `stop`
    ("stop"; the stop string itself is not emitted, even when it spans tokens), max_new_tokens or
    the context window ("length"), or `should_stop()` turning true / Ctrl-C inside the loop
    ("interrupted"); `should_stop` is checked after every token, and between the PREFILL_CHUNK-token
    chunks of the prompt, so a long prompt can be interrupted before its first token (the cache
    then holds the chunks computed). `on_prefill(done, total)` reports the prompt's progress.
    `continues`: the last ids of the prompt whose text the caller already showed (a /branch prefix):
    the answer's text continues theirs, so a character they split is completed, not broken.
    """
    input_ids = list(input_ids)
    if not input_ids:
        raise UsageError("the prompt is empty", "give some text")
    if len(input_ids) >= loaded.context_length:
        raise ContextOverflow(f"the prompt is {len(input_ids)} tokens; the context is {loaded.context_length}",
                              "shorten the prompt")
    cache = cache if cache is not None else PromptCache()
    stops = tuple(dict.fromkeys((*params.stop, *stop)))
    sampler = make_sampler(params, generator if generator is not None else make_generator(params.seed))
    return _loop(loaded, input_ids, params, alternatives, stops, cache, sampler, should_stop or (lambda: False),
                 on_prefill, tuple(continues))


def prompt_flag(model, prompt: bool = True) -> dict:
    """The keyword that tells a model these are prompt tokens, for models that take it (llmchat's CPU
    forward computes them more exactly than generated ones: cpu/quant.py's GgufLinear, two int8 passes)."""
    return {"prompt": True} if prompt and getattr(model, "takes_prompt_flag", False) else {}


def _forward(model, cache: PromptCache, ids: list[int], prompt: bool = False) -> torch.Tensor:
    """Run `ids` through the model on top of the cache; returns the last position's logits.
    `prompt`: these are prompt tokens (also one left after a reused prefix), which llmchat's CPU
    forward computes more exactly than generated ones (cpu/quant.py's GgufLinear: two int8 passes).

    Out of device memory: the cache is dropped and freed, and OutOfMemory (exit 6) is raised, so a
    chat can go on with the next turn."""
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=model.device), cache=cache.kv,
                        use_cache=True, logits_to_keep=1, **prompt_flag(model, prompt))
    except torch.OutOfMemoryError:
        context = len(cache.tokens) + len(ids)
        cache.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(f"out of memory while computing {context} tokens of context",
                          "shorten the conversation (/clear), lower max tokens, or use a smaller dtype") from None
    cache.kv = out.cache
    cache.tokens.extend(ids)
    return out.logits[0, -1]


def _prefill(model, cache: PromptCache, ids: list[int], should_stop, on_prefill) -> torch.Tensor | None:
    """The prompt in chunks; None when `should_stop()` turned true between two of them."""
    done, logits = 0, None
    while done < len(ids):
        part = ids[done:done + PREFILL_CHUNK]
        logits = _forward(model, cache, part, prompt=True)
        done += len(part)
        if on_prefill is not None:
            on_prefill(done, len(ids))
        if done < len(ids) and should_stop():
            return None
    return logits


def _loop(loaded, input_ids, params, k, stops, cache, sampler, should_stop, on_prefill=None, continues=()):
    model, tokenizer = loaded.model, loaded.tokenizer
    started = time.perf_counter()
    reused = cache.reuse(input_ids)
    special_ids = set(tokenizer.all_special_ids)
    eos_ids = set(loaded.eos_ids)
    penalty = params.repetition_penalty
    seen = list(input_ids) if penalty != 1.0 else []
    detok = IncrementalDetokenizer(tokenizer)
    for token in continues:  # their text was shown by the caller; only what they leave held carries on
        detok.add(token)
    releaser = StopReleaser(stops)
    stats = dict(prompt_tokens=len(input_ids), reused_tokens=reused)
    generated, first_at, reason, detail = 0, None, "length", "max tokens"
    try:
        logits = _prefill(model, cache, input_ids[reused:], should_stop, on_prefill)
        prefill_seconds = time.perf_counter() - started
        if logits is None:
            reason, detail = "interrupted", "during the prompt"
        while logits is not None:
            logits = logits.float().cpu()
            if penalty != 1.0:
                logits = apply_repetition_penalty(logits, torch.tensor(seen), penalty)
            token, sample_prob = sampler(logits)
            logprobs = torch.log_softmax(logits, dim=-1)
            logprob = float(logprobs[token])
            probs = logprobs.exp()
            entropy = float(torch.special.entr(probs).sum())
            alts = top_alternatives(tokenizer, probs, k)
            piece = tokenizer.convert_ids_to_tokens(token)
            is_special = token in special_ids
            text = "" if is_special else detok.add(token)
            event = TokenEvent(index=generated, id=token, piece=piece, bytes=_piece_bytes(tokenizer, token, is_special),
                               text=text, is_special=is_special, prob=math.exp(logprob), logprob=logprob,
                               sample_prob=sample_prob, entropy=entropy, alternatives=alts)
            generated += 1
            if first_at is None:
                first_at = time.perf_counter()
            if token in eos_ids:
                reason, detail = "eos", piece
                releaser.pending.append(event)
                break
            released, hit = releaser.add(event, holding=detok.holding)
            yield from released
            if hit is not None:
                reason, detail = "stop", hit
                break
            if penalty != 1.0:
                seen.append(token)
            if generated >= params.max_new_tokens:
                break
            if len(cache.tokens) + 1 >= loaded.context_length:
                detail = "context window"
                break
            if should_stop():
                reason, detail = "interrupted", ""
                break
            logits = _forward(model, cache, [token])
    except KeyboardInterrupt:
        reason, detail = "interrupted", ""
    if reason != "stop":
        yield from releaser.finish(detok.flush())
    now = time.perf_counter()
    computed = len(input_ids) - reused
    yield Finished(
        reason=reason, detail=detail, generated_tokens=generated,
        ttft=(first_at or now) - started,
        prefill_tps=computed / prefill_seconds if first_at and prefill_seconds > 0 else 0.0,
        decode_tps=(generated - 1) / (now - first_at) if first_at and generated > 1 and now > first_at else 0.0,
        total_seconds=now - started, **stats)


def _piece_bytes(tokenizer, token: int, is_special: bool) -> bytes:
    """The bytes a token contributes to the text (a byte-level piece may be part of a character)."""
    return b"" if is_special else token_bytes(tokenizer, token)


def next_distribution(loaded: LoadedModel, input_ids: list[int], k: int = 10) -> Distribution:
    """One forward pass: the model's distribution over the token that would come next."""
    if not input_ids:
        raise UsageError("the prompt is empty", "give some text")
    if len(input_ids) > loaded.context_length:
        raise ContextOverflow(f"the prompt is {len(input_ids)} tokens; the context is {loaded.context_length}",
                              "shorten the prompt")
    logits = _prefill(loaded.model, PromptCache(), list(input_ids), lambda: False, None).float().cpu()
    probs = torch.softmax(logits, dim=-1)
    return Distribution(prompt_tokens=len(input_ids), entropy=float(torch.special.entr(probs).sum()),
                        top=top_alternatives(loaded.tokenizer, probs, k))


def top_alternatives(tokenizer, probs: torch.Tensor, k: int) -> tuple[Alternative, ...]:
    """The k most probable tokens of a distribution, most probable first (none for k = 0)."""
    if k <= 0:
        return ()
    top = torch.topk(probs, min(k, probs.numel()))
    ids = top.indices.tolist()
    return tuple(Alternative(i, p, float(pr)) for i, p, pr in
                 zip(ids, tokenizer.convert_ids_to_tokens(ids), top.values.tolist()))
