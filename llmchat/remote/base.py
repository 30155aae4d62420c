"""What every remote-engine adapter shares: the probed `Capabilities`, the plain token an
engine reports (`RawToken`) and a parsed stream chunk (`Chunk`), server-sent-event lines, the
settings an engine cannot take (`ignored`), and the `Engine` interface the adapters in
`engines.py` implement. Nothing here does I/O except through the `Http` it is given."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..engine.sampling import SamplingParams
from ..errors import LlmchatError, RemoteError
from .http import Http


@dataclass(frozen=True)
class Capabilities:
    """What a server can do, probed once (`models show` prints it)."""

    engine: str
    model: str  # the served model name requests carry
    served: tuple[str, ...]  # every model the server lists
    context: int | None
    max_k: int | None  # alternatives per token; None: no cap
    probs: str  # "raw" (the model distribution), "processed" (after temperature) or "none"
    token_ids: bool  # takes prompt ids and returns token ids
    server_template: bool  # can apply the chat template itself
    server_tokenize: bool
    vocab: int | None = None
    bos: str | None = None
    eos: str | None = None
    chat_template: str | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"engine": self.engine, "model": self.model, "served": list(self.served), "context": self.context,
                "max_alternatives": self.max_k, "probabilities": self.probs, "token_ids": self.token_ids,
                "server_template": self.server_template, "server_tokenize": self.server_tokenize,
                "vocab": self.vocab, "notes": list(self.notes)}


@dataclass(frozen=True)
class RawToken:
    """One token as an engine reported it. `data` None: the engine gave no bytes (look them up)."""

    id: int | None
    data: bytes | None
    text: str | None
    logprob: float | None
    top: tuple[tuple[int | None, bytes | None, str | None, float], ...] = ()


@dataclass
class Chunk:
    tokens: list[RawToken] = field(default_factory=list)
    done: bool = False
    reason: str | None = None  # "eos", "stop", "length"
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    server_ms: dict = field(default_factory=dict)  # the engine's own timings, when it sends them


def _sse(line: str) -> dict | None:
    """One server-sent-event line → its JSON (None for `[DONE]` and comments)."""
    if line.startswith(":"):
        return None
    if line.startswith("error:"):
        line = line[len("error:"):]
    elif line.startswith("data:"):
        line = line[len("data:"):]
    line = line.strip()
    if line == "[DONE]":
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise RemoteError(f"the server sent a line that is not JSON ({line[:60]!r})",
                          "check `engine =` in models.toml: this reply is not that engine's format") from None
    if not isinstance(data, dict):
        raise RemoteError("the server sent JSON that is not an object", "check `engine =` in models.toml")
    if "error" in data and not data.get("choices"):
        error = data["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteError(f"the server stopped with an error: {str(message)[:200]}", "see the server's log")
    return data


def ignored(params: SamplingParams, supported: set[str]) -> list[str]:
    """The settings that differ from their neutral value but that the engine cannot take."""
    neutral = SamplingParams()
    active = {"top_k": params.top_k != neutral.top_k, "top_p": params.top_p != neutral.top_p,
              "min_p": params.min_p != neutral.min_p,
              "repetition_penalty": params.repetition_penalty != neutral.repetition_penalty,
              "seed": params.seed is not None}
    return [name for name, on in active.items() if on and name not in supported]


class Engine:
    name = "?"
    supports = {"top_k", "top_p", "min_p", "repetition_penalty", "seed"}

    def __init__(self, http: Http, served_model: str | None):
        self.http, self.served_model = http, served_model

    def probe(self) -> Capabilities: ...

    def tokenize(self, caps: Capabilities, text: str, add_special: bool) -> list[int]:
        raise LlmchatError(f"{self.name} has no tokenize endpoint", "set `tokenizer =` in the models.toml entry")

    def tokenize_pieces(self, caps: Capabilities, text: str, add_special: bool,
                        parse_special: bool = True) -> list[tuple[int, bytes | None]]:
        return [(i, None) for i in self.tokenize(caps, text, add_special)]

    def template_text(self, caps: Capabilities, messages: list[dict], add_generation_prompt: bool) -> str | None:
        """The rendered prompt as text, where the server shows it (None: only ids)."""
        return None

    def detokenize(self, caps: Capabilities, ids: list[int]) -> str:
        raise LlmchatError(f"{self.name} has no detokenize endpoint", "set `tokenizer =` in the models.toml entry")

    def template_ids(self, caps: Capabilities, messages: list[dict], add_generation_prompt: bool) -> list[int]:
        raise LlmchatError(f"{self.name} cannot apply the chat template", "set `tokenizer =` in the models.toml entry")

    def request(self, caps: Capabilities, ids: list[int], params: SamplingParams, k: int, max_tokens: int,
                stream: bool) -> tuple[str, dict]: ...

    def parse(self, data: dict, state: dict) -> Chunk: ...


def _first_model(http: Http) -> tuple[list[dict], tuple[str, ...]]:
    data = http.get("/v1/models", ok_404=True) or {}
    rows = [row for row in data.get("data", []) if isinstance(row, dict)] if isinstance(data, dict) else []
    return rows, tuple(str(row.get("id")) for row in rows if row.get("id"))


def _choose(served: tuple[str, ...], wanted: str | None, url: str) -> str:
    if wanted is None:
        if not served:
            raise RemoteError(f"{url} lists no models", "name one with `model =` in models.toml")
        return served[0]
    if served and wanted not in served:
        from ..errors import ModelNotFound

        raise ModelNotFound(f"{url} does not serve {wanted!r}; it serves: {', '.join(served)}",
                            "set `model =` to one of those")
    return wanted
