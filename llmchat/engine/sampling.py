"""Sampling parameters and the small pure functions that turn logits into a choice.

Order (the same as transformers' processors and warpers):
  1. repetition penalty   → the *model distribution* is the softmax here
  2. temperature           (0 means greedy: argmax of step 1, nothing else applies)
  3. top-k                 keep the k highest logits; tokens tied with the k-th are all kept
  4. top-p                 keep the smallest prefix of the sorted distribution whose mass ≥ p
  5. min-p                 keep tokens whose probability ≥ min_p × the top probability
  6. softmax → sample with an explicit, seeded torch.Generator → the *sampling distribution*
Each filter takes and returns a 1-D float logits tensor; removed tokens become -inf. The most
probable token always survives, so the kept set is never empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from ..errors import UsageError

if TYPE_CHECKING:  # torch is imported where it is used: option parsing must stay fast
    import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to choose tokens. temperature 0 = greedy; top_k 0, top_p 1.0, min_p 0.0 = off."""

    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_new_tokens: int = 512
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        problems = []
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            problems.append(f"temperature must be ≥ 0 (got {self.temperature})")
        if self.top_k < 0:
            problems.append(f"top-k must be ≥ 0 (got {self.top_k})")
        if not (0 < self.top_p <= 1):
            problems.append(f"top-p must be in (0, 1] (got {self.top_p})")
        if not (0 <= self.min_p < 1):
            problems.append(f"min-p must be in [0, 1) (got {self.min_p})")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            problems.append(f"repetition penalty must be > 0 (got {self.repetition_penalty})")
        if self.max_new_tokens < 1:
            problems.append(f"max tokens must be ≥ 1 (got {self.max_new_tokens})")
        if any(not s for s in self.stop):
            problems.append("a stop string must not be empty")
        if problems:
            raise UsageError("; ".join(problems), "fix the sampling option")

    def with_overrides(self, **values) -> "SamplingParams":
        """A copy with the given fields replaced; None values are ignored."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict:
        """The settings as users name them (`max_tokens`): --json, saved chats, the socket."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p,
                "repetition_penalty": self.repetition_penalty, "max_tokens": self.max_new_tokens,
                "seed": self.seed, "stop": list(self.stop)}

    @classmethod
    def from_dict(cls, data: dict) -> "SamplingParams":
        """The inverse of `to_dict`, validated like any SamplingParams (UsageError, exit 2)."""
        names = set(cls().to_dict())
        if not isinstance(data, dict) or set(data) - names:
            raise UsageError(f"bad sampling settings: {data!r}", f"allowed keys: {', '.join(sorted(names))}")
        values = dict(data)
        if "max_tokens" in values:
            values["max_new_tokens"] = values.pop("max_tokens")
        if "stop" in values:
            values["stop"] = tuple(values["stop"])
        return cls(**values)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' definition: for every token already seen, divide a positive logit by the
    penalty and multiply a negative one by it (penalty > 1 discourages repeats)."""
    import torch

    if penalty == 1.0 or seen.numel() == 0:
        return logits
    ids = torch.unique(seen)
    picked = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / temperature if temperature != 1.0 else logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    import torch

    if k <= 0 or k >= logits.numel():
        return logits
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    import torch

    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass strictly before each token
    drop_sorted = before >= p  # keep a token while the mass before it is < p: the smallest prefix reaching p
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    import torch

    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(), float("-inf"))


Sampler = Callable[["torch.Tensor"], tuple[int, float]]


def make_sampler(params: SamplingParams, generator: torch.Generator | None) -> Sampler:
    """A function: penalised logits (1-D, float32) → (token id, its probability under the
    sampling distribution). Temperature 0 is argmax with probability 1.0."""
    if params.temperature == 0:
        return lambda logits: (int(logits.argmax()), 1.0)

    import torch

    def sample(logits: torch.Tensor) -> tuple[int, float]:
        logits = apply_temperature(logits, params.temperature)
        logits = top_k_filter(logits, params.top_k)
        logits = top_p_filter(logits, params.top_p)
        logits = min_p_filter(logits, params.min_p)
        probs = torch.softmax(logits, dim=-1)
        token = int(torch.multinomial(probs, 1, generator=generator))
        return token, float(probs[token])

    return sample


def make_generator(seed: int | None, device: str = "cpu") -> torch.Generator:
    """An explicit generator: seeded when asked, else from fresh OS entropy (and reported)."""
    import torch

    generator = torch.Generator(device=device if device.startswith(("cuda", "mps")) else "cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
