"""The OpenAI API's shapes for `serve --http`: reading a request (sampling settings, messages,
top-K counts, with their limits) and writing the per-token records, in OpenAI's field names plus
vLLM's where OpenAI has none (`token_id`, `token_ids`, `return_tokens_as_token_ids`). No HTTP here:
`serve/http.py` is the app that uses these.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace

from ..engine.events import Finished, TokenEvent
from ..engine.sampling import SamplingParams
from ..engine.source import ModelSource
from ..errors import ContextOverflow, LlmchatError, UsageError
from ..tokenizer.pieces import token_bytes

FINISH = {"eos": "stop", "stop": "stop", "length": "length", "interrupted": "abort"}


@dataclass
class Limits:
    max_logprobs: int = 20  # top_logprobs / logprobs above this are refused (400)
    max_tokens: int = 4096  # a request may ask for at most this many new tokens
    max_queue: int = 16  # requests waiting for the engine; one more gets 429
    max_body: int = 8 * 1024 * 1024  # bytes of request body; more gets 413


class ApiError(Exception):
    """An HTTP error with OpenAI's body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def from_llmchat(exc: LlmchatError) -> ApiError:
    if isinstance(exc, ContextOverflow):
        return ApiError(400, exc.one_line(), code="context_length_exceeded")
    if isinstance(exc, UsageError):
        return ApiError(400, exc.one_line())
    return ApiError(500, exc.one_line(), "server_error")


# ---------------------------------------------------------------------------------- request parsing
def _number(body: dict, name: str, kind, default=None, low=None, high=None):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ApiError(400, f"'{name}' must be a {'number' if kind is not int else 'whole number'}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ApiError(400, f"'{name}' is {value}; it must be between {low} and {high}", param=name)
    return value


def sampling(body: dict, defaults: SamplingParams, prompt_tokens: int, context: int, limits: Limits,
             default_max: int | None = None) -> SamplingParams:
    if _number(body, "n", int, 1) != 1:
        raise ApiError(400, "only n = 1 is supported (the engine decodes one sequence)", param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(body, name, (int, float), 0) != 0:
            raise ApiError(400, f"'{name}' is not supported; use repetition_penalty", param=name)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise ApiError(400, "'stop' must be a string or a list of non-empty strings", param="stop")
    room = context - prompt_tokens
    if room < 1:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens and the model's context is {context}",
                       code="context_length_exceeded")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    wanted = _number(body, name, int, None, 1, limits.max_tokens)
    if wanted is None:
        wanted = min(room, limits.max_tokens, default_max or room)
    elif prompt_tokens + wanted > context:
        raise ApiError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                            f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the prompt, {wanted} in the "
                            f"completion). Lower max_tokens or shorten the prompt.", param=name,
                       code="context_length_exceeded")
    seed = _number(body, "seed", int, None)
    try:
        return replace(defaults, temperature=_number(body, "temperature", (int, float), defaults.temperature, 0, 100),
                       top_p=_number(body, "top_p", (int, float), defaults.top_p, 0, 1),
                       top_k=_number(body, "top_k", int, defaults.top_k),
                       min_p=_number(body, "min_p", (int, float), defaults.min_p, 0, 1),
                       repetition_penalty=_number(body, "repetition_penalty", (int, float), defaults.repetition_penalty),
                       max_new_tokens=wanted, seed=seed if seed is not None else secrets.randbits(31),
                       stop=tuple(stop) if stop is not None else defaults.stop)
    except UsageError as exc:
        raise ApiError(400, exc.one_line()) from None


def messages_of(body: dict, system: str | None) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    out = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, "each message needs a role: system, user or assistant", param="messages")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise ApiError(400, "only text content parts are supported", param="messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ApiError(400, "a message's content must be a string or text parts", param="messages")
        out.append({"role": "system" if message["role"] == "developer" else message["role"], "content": content})
    if system and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system})  # the model's own system prompt, as `ask` adds it
    return out


def top_count(body: dict, name: str, limits: Limits, flag: bool = True) -> int:
    value = _number(body, name, int, 0, 0)
    if value > limits.max_logprobs:
        raise ApiError(400, f"'{name}' is {value}; this server allows at most {limits.max_logprobs} "
                            "(start it with a larger --max-logprobs)", param=name)
    return value if flag else 0


# ---------------------------------------------------------------------------------- records
class Tokens:
    """Per-token records in both OpenAI shapes (chat: content[]; completions: parallel lists)."""

    def __init__(self, source: ModelSource, as_ids: bool):
        self.tokenizer, self.as_ids = source.tokenizer, as_ids
        self.special = set(source.tokenizer.all_special_ids)

    def name(self, token_id: int, data: bytes | None = None, piece: str | None = None) -> str:
        if self.as_ids:
            return f"token_id:{token_id}"
        if token_id in self.special:
            return piece if piece is not None else self.tokenizer.convert_ids_to_tokens(token_id)
        raw = data if data is not None else token_bytes(self.tokenizer, token_id)
        return raw.decode("utf-8", "replace")

    def bytes_of(self, token_id: int) -> list[int]:
        return [] if token_id in self.special else list(token_bytes(self.tokenizer, token_id))

    def chat(self, event: TokenEvent) -> dict:
        return {"token": self.name(event.id, event.bytes, event.piece), "token_id": event.id,
                "logprob": finite(event.logprob), "bytes": list(event.bytes),
                "top_logprobs": [{"token": self.name(a.id, piece=a.piece), "token_id": a.id,
                                  "logprob": alt_logprob(a.prob), "bytes": self.bytes_of(a.id)} for a in event.alternatives]}


def alt_logprob(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0  # OpenAI's floor for a probability of zero


def finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def usage(finished: Finished) -> dict:
    return {"prompt_tokens": finished.prompt_tokens, "completion_tokens": finished.generated_tokens,
            "total_tokens": finished.prompt_tokens + finished.generated_tokens,
            "prompt_tokens_details": {"cached_tokens": finished.reused_tokens}}


# ---------------------------------------------------------------------------------- echo
def delta(pieces: list[tuple[str, str]]) -> dict:
    delta: dict[str, str] = {}
    for channel, text in pieces:
        key = "content" if channel == "answer" else "reasoning_content"
        delta[key] = delta.get(key, "") + text
    return delta or {"content": ""}


def prompt_logprobs(source: ModelSource, ids: list[int], k: int, records: Tokens) -> list[dict]:
    """The prompt's tokens for echo: text, and logprobs by scoring it (the first token has none)."""
    from ..tokenizer.detokenize import IncrementalDetokenizer

    scored = source.score(ids, 1, alternatives=k) if len(ids) > 1 else None
    detok, out = IncrementalDetokenizer(source.tokenizer), []
    for n, token in enumerate(ids):
        text = "" if token in records.special else detok.add(token)
        event = scored.tokens[n - 1].event if scored is not None and n > 0 else None
        out.append({"id": token, "text": text, "name": records.name(token),
                    "logprob": event.logprob if event else None,
                    "top": {records.name(a.id, piece=a.piece): alt_logprob(a.prob) for a in event.alternatives} if event else None})
    tail = detok.flush()
    if tail and out:
        out[-1]["text"] += tail
    return out


def echo_logprobs(prompt_records: list[dict]) -> dict:
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    offset = 0
    for r in prompt_records:
        out["tokens"].append(r["name"])
        out["token_logprobs"].append(r["logprob"])
        out["top_logprobs"].append(r["top"])
        out["text_offset"].append(offset)
        offset += len(r["text"])
    return out
