"""What the engine yields: plain Python data, no tensors.

Two distributions are reported for every generated token:

- the *model distribution*: softmax of the model's logits after the repetition penalty and
  before temperature and truncation (top-k, top-p, min-p). `prob`, `logprob`, `entropy` and the
  `alternatives` are taken from it. It is what the model "thinks", independent of how we sample.
- the *sampling distribution*: the distribution the token was actually drawn from, after
  temperature and the truncation filters, renormalised. `sample_prob` is taken from it. With
  temperature 0 (greedy) the sampling distribution puts 1.0 on the argmax.

Entropy is in nats (natural log); divide by ln 2 for bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Alternative:
    """One of the top-K tokens of the model distribution at a step (the sampled one may be among them)."""

    id: int
    piece: str  # the token as the tokenizer stores it (e.g. "Ġthe", "<|im_end|>")
    prob: float  # under the model distribution


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token.

    index:       0-based position in the answer.
    id:          token id.
    piece:       the raw token as stored in the vocabulary (byte-level pieces look like "Ġthe").
    bytes:       the bytes this token contributes to the text (may be part of a UTF-8 character).
    text:        the text delta this token adds to the answer, from the incremental detokenizer.
                 It can be "" (half a character that completes later) and can hold text held back
                 from earlier tokens. Joined over the answer it equals the decoded answer.
    is_special:  a special/control token (e.g. end of turn); it adds no text.
    prob, logprob: probability of this token under the model distribution (see module doc).
    sample_prob: probability of this token under the sampling distribution.
    entropy:     entropy of the model distribution at this step, in nats.
    alternatives: the top-K tokens of the model distribution (K=0: empty).
    """

    index: int
    id: int
    piece: str
    bytes: bytes
    text: str
    is_special: bool
    prob: float
    logprob: float
    sample_prob: float
    entropy: float
    alternatives: tuple[Alternative, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of a generation.

    reason: "eos" (an end-of-sequence/turn token), "stop" (a stop string), "length" (max new tokens
            or the context window), "interrupted" (Ctrl-C inside the loop).
    prompt_tokens: tokens in the prompt; reused_tokens: how many of them came from the cache of
            the previous call (prefix reuse) and were not recomputed.
    generated_tokens: tokens sampled, including an end token.
    ttft: seconds from the call to the first sampled token (prefill included).
    prefill_tps: prompt tokens actually computed per second; decode_tps: generated tokens per
            second after the first one. total_seconds: the whole call.
    """

    reason: str
    prompt_tokens: int
    generated_tokens: int
    reused_tokens: int
    ttft: float
    prefill_tps: float
    decode_tps: float
    total_seconds: float
    detail: str = ""  # e.g. which stop string, or "context window" vs "max tokens"


@dataclass(frozen=True, slots=True)
class Distribution:
    """The model distribution over the next token after a prompt (softmax of the logits, no
    penalty, temperature or truncation): the top-K entries, most probable first, and the entropy
    of the whole distribution in nats."""

    prompt_tokens: int
    entropy: float
    top: tuple[Alternative, ...]
