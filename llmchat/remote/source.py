"""`RemoteEngine`: an `engine.source.ModelSource` whose forward passes run on a remote inference
engine (llama.cpp's llama-server, vLLM, SGLang, or an OpenAI-compatible server).

Token ids first: the conversation becomes ids (the server's own template endpoint where it has
one), the ids are sent, and every streamed token comes back as an id with its logprob and top-K,
normalised into the same `TokenEvent`s the local engine yields — the incremental detokenizer and
stop strings run here on those ids, exactly as locally — so chat, `ask --json`, the views and
saved conversations do not know the difference. What an engine cannot give is said once, in one
line (`notice`), and never replaced by a number that means something else:

- entropy needs the whole distribution: NaN (shown as "-") except in `next` on llama.cpp, which
  asks for every token's probability;
- `sample_prob` is 1.0 under greedy decoding and unknown (NaN) otherwise: the engines report the
  model distribution or the sampling one, not both;
- an engine whose probabilities come after temperature (SGLang by default) shows none, unless
  the temperature is 0 or 1 (where the two agree).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, Iterable, Iterator

from ..config.families import detect_family
from ..config.registry import ModelSpec
from ..engine.events import Alternative, Distribution, Finished, TokenEvent
from ..engine.sampling import SamplingParams
from ..engine.stops import StopReleaser
from ..errors import LlmchatError, RemoteError, UsageError
from ..prompt import build as prompting
from ..prompt.build import Prompt
from ..tokenizer.detokenize import IncrementalDetokenizer
from .base import Capabilities, RawToken, _sse, ignored
from .engines import ENGINES, detect
from .http import Http
from .tokenizer import TEXT_ID, text_level_error

DEFAULT_CONTEXT = 8192  # when neither models.toml nor the server says (the server still refuses what does not fit)
FULL_DISTRIBUTION = 262144  # `next` asks llama-server for every token's probability up to this vocabulary


def stderr_notice(line: str) -> None:
    print(f"llmchat: note: {line}", file=sys.stderr, flush=True)


class RemoteEngine:
    """A ModelSource on a server. `local_tokenizer`: exact vocabulary pieces and decoding here."""

    def __init__(self, spec: ModelSpec, *, local_tokenizer=None, notice: Callable[[str], None] = stderr_notice):
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self.notice = notice
        self.http = Http(spec.location, api_key=key or None, key_env=spec.api_key_env, read_timeout=spec.timeout,
                         notice=notice)
        warning = self.http.plain_http_warning()
        if warning:
            print(f"llmchat: {warning}", file=sys.stderr, flush=True)
        name = spec.engine or detect(self.http)
        self.adapter = ENGINES[name](self.http, spec.served_model)
        self.caps: Capabilities = self.adapter.probe()
        from .tokenizer import RemoteTokenizer

        self.spec = spec
        self.tokenizer = RemoteTokenizer(self.adapter, self.caps, local_tokenizer)
        self.family = detect_family(spec.family, None, self.caps.chat_template or self.tokenizer.chat_template,
                                    spec.thinking)
        self.context_length = spec.context or self.caps.context or DEFAULT_CONTEXT
        self.weights = f"remote {self.caps.engine}"
        self.backend = f"{self.caps.engine} at {spec.location}"
        self.device = "remote"
        self._told: set[str] = set()
        self.eos_ids = self._eos_ids()
        self.last_server: dict = {}  # the engine's own timings of the last answer (bench/remote.py reads them)

    def _eos_ids(self) -> set[int]:
        """The tokens that end an answer: the tokenizer's eos and the family's end-of-turn tokens."""
        found = {self.tokenizer.eos_token_id} - {None}
        for name in dict.fromkeys(self.family.end_of_turn + ((self.caps.eos,) if self.caps.eos else ())):
            try:
                ids = self.tokenizer.encode(name, add_special_tokens=False)
            except LlmchatError:
                continue
            if len(ids) == 1 and ids[0] in self.tokenizer._special:
                found.add(ids[0])
        return found

    def tell_once(self, key: str, line: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.notice(line)

    # ------------------------------------------------------------------ ModelSource
    def render(self, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        return prompting.chat_ids(self, messages, add_generation_prompt)

    def prepare(self, text: str, *, system: str | None, raw: bool, truncate: bool, max_new_tokens: int,
                keep: int = 0) -> Prompt:
        return prompting.prepare(self, text, system=system, raw=raw, truncate=truncate, max_new_tokens=max_new_tokens,
                                 keep=keep)

    @property
    def token_ids(self) -> bool:
        """False for a text-level server: the session refuses /branch before touching the answer."""
        return self.caps.token_ids

    def _check_ids(self, ids: list[int]) -> None:
        if not self.caps.token_ids:
            raise text_level_error(self.caps.engine)
        vocab = self.caps.vocab
        bad = next((i for i in ids if i < 0 or (vocab and i >= vocab)), None)
        if bad is not None:
            raise UsageError(f"token id {bad} is outside the server's vocabulary (0–{(vocab or 1) - 1})",
                             "use ids from `llmchat tokenize` with this model")

    def _k(self, alternatives: int) -> int:
        cap = self.caps.max_k
        if cap is not None and alternatives > cap:
            self.tell_once("k", f"{self.caps.engine} returns at most {cap} alternatives per token; showing {cap}"
                                + (" (start vLLM with --max-logprobs N for more)" if self.caps.engine == "vllm" else ""))
            return cap
        return alternatives

    def _probs_meaningful(self, params: SamplingParams) -> bool:
        if self.caps.probs == "raw":
            return True
        if params.temperature in (0.0, 1.0):
            return True
        self.tell_once("processed", f"{self.caps.engine} reports probabilities after temperature "
                                    f"{params.temperature:g}, not the model's: probabilities are not shown "
                                    "(start SGLang with SGLANG_RETURN_ORIGINAL_LOGPROB=1, or use temperature 1)")
        return False

    def generate(self, ids: list[int], params: SamplingParams, *, alternatives: int = 5, stop: Iterable[str] = (),
                 should_stop: Callable[[], bool] | None = None,
                 on_prefill: Callable[[int, int], None] | None = None,
                 continues: Iterable[int] = ()) -> Iterator[TokenEvent | Finished]:
        """Streams from the server (`on_prefill` is not called: the engines do not report it).
        Ctrl-C (`should_stop`) closes the connection, which stops the server's generation."""
        ids = [int(i) for i in ids]
        continues = list(continues)
        if not self.caps.token_ids:
            if continues:  # a branch prefix is ids
                raise text_level_error(self.caps.engine)
            messages = self.tokenizer.messages_for(ids)
        else:
            self._check_ids(ids)
        room = self.context_length - len(ids)
        if room < 1:
            from ..errors import ContextOverflow

            raise ContextOverflow(f"the prompt is {len(ids)} tokens; the server's context is {self.context_length}",
                                  "shorten the conversation (/clear) or raise the server's context size")
        skipped = ignored(params, self.adapter.supports)
        if skipped:
            self.tell_once("ignored:" + ",".join(skipped),
                           f"{self.caps.engine} has no {', '.join(skipped)}: {'it is' if len(skipped) == 1 else 'they are'} "
                           "ignored for this answer")
        k = self._k(alternatives)
        if not self.caps.token_ids:
            self.tell_once("text", f"{self.caps.engine} servers work at text level: no token ids, so /branch, "
                                   "`next`, `tokenize` and exact token views are unavailable; prompt sizes are "
                                   "estimates until the server reports its count")
            path, body = self.adapter.chat_request(self.caps, messages, params, k, min(params.max_new_tokens, room),
                                                   True)
        else:
            path, body = self.adapter.request(self.caps, ids, params, k, min(params.max_new_tokens, room), True)
        started = time.perf_counter()
        stream = self.http.stream(path, body)
        return self._events(stream, ids, params, k, tuple(stop) + tuple(params.stop), should_stop or (lambda: False),
                            continues, started)

    def _events(self, stream, ids, params, k, stops, should_stop, continues, started):
        tokenizer = self.tokenizer
        detok = IncrementalDetokenizer(tokenizer)
        for token in continues:
            detok.add(token)
        releaser = StopReleaser(stops)
        meaningful = self._probs_meaningful(params)
        state: dict = {"stream": True}
        generated, first_at, reason, detail = 0, None, None, ""
        prompt_tokens, cached = len(ids), 0
        try:
            for line in stream.lines(should_stop):
                data = _sse(line)
                if data is None:
                    continue
                try:
                    chunk = self.adapter.parse(data, state)
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                    raise RemoteError(f"{self.caps.engine} sent a chunk llmchat cannot read ({type(exc).__name__}: "
                                      f"{str(exc)[:80]})", "check `engine =` in models.toml") from None
                for raw in chunk.tokens:
                    event = self._event(raw, generated, detok, params, k, meaningful)
                    generated += 1
                    first_at = first_at or time.perf_counter()
                    if event.id in self.eos_ids:
                        releaser.pending.append(event)
                        continue
                    released, hit = releaser.add(event, holding=detok.holding)
                    yield from released
                    if hit is not None:
                        reason, detail = "stop", hit
                        break
                if reason == "stop":
                    break
                if chunk.done:
                    reason = chunk.reason or "length"
                    detail = {"length": "max tokens", "eos": ""}.get(reason, "")
                    prompt_tokens = chunk.prompt_tokens or prompt_tokens
                    cached = int(chunk.cached_tokens or 0)
                    self.last_server = dict(chunk.server_ms)
                    break
            else:
                if should_stop():
                    reason = "interrupted"
                elif state.get("reason"):  # [DONE] without a usage chunk (servers that ignore stream_options)
                    reason = state["reason"]
                    detail = {"length": "max tokens"}.get(reason, "")
        finally:
            stream.close()
        if reason is None:
            raise RemoteError(f"{self.spec.location} closed the stream after {generated} tokens "
                              f"(the answer above is partial)", "is the server still running? see its log")
        if reason == "eos" and releaser.pending:
            detail = releaser.pending[-1].piece if releaser.pending[-1].is_special else ""
        if reason != "stop":
            yield from releaser.finish(detok.flush())
        now = time.perf_counter()
        server_prompt_ms = self.last_server.get("prompt_ms") if reason != "interrupted" else None
        computed = prompt_tokens - cached
        yield Finished(reason=reason, detail=detail, prompt_tokens=prompt_tokens, generated_tokens=generated,
                       reused_tokens=cached, ttft=(first_at or now) - started,
                       prefill_tps=(computed / (server_prompt_ms / 1000)) if server_prompt_ms else 0.0,
                       decode_tps=(generated - 1) / (now - first_at) if first_at and generated > 1 and now > first_at
                       else 0.0, total_seconds=now - started)

    def _event(self, raw: RawToken, index: int, detok, params, k, meaningful) -> TokenEvent:
        if not self.caps.token_ids:
            return self._text_event(raw, index, params, k, meaningful)
        tokenizer = self.tokenizer
        vocab = self.caps.vocab
        if raw.id is None or raw.id < 0 or (vocab and raw.id >= vocab):
            raise RemoteError(f"the server sent token id {raw.id}, outside its vocabulary of {vocab}",
                              "the server is misbehaving: see its log")
        tokenizer.learn(raw.id, raw.data, raw.text)
        for alt_id, data, text, _ in raw.top:
            if alt_id is not None:
                tokenizer.learn(alt_id, data, text)
        is_special = raw.id in tokenizer._special
        data = b"" if is_special else (raw.data if raw.data is not None else tokenizer.token_bytes(raw.id))
        text = "" if is_special else detok.add(raw.id)
        logprob = raw.logprob if meaningful and raw.logprob is not None else math.nan
        alts: tuple[Alternative, ...] = ()
        if meaningful and k:
            ranked = sorted(((a[0], a[3]) for a in raw.top if a[0] is not None), key=lambda a: -a[1])[:k]
            pieces = tokenizer.convert_ids_to_tokens([a for a, _ in ranked]) if ranked else []
            alts = tuple(Alternative(a, piece, math.exp(lp)) for (a, lp), piece in zip(ranked, pieces))
        return TokenEvent(index=index, id=raw.id, piece=tokenizer.convert_ids_to_tokens(raw.id), bytes=data,
                          text=text, is_special=is_special, prob=math.exp(logprob) if not math.isnan(logprob) else math.nan,
                          logprob=logprob, sample_prob=1.0 if params.temperature == 0 else math.nan,
                          entropy=math.nan, alternatives=alts)

    def _text_event(self, raw: RawToken, index: int, params, k, meaningful) -> TokenEvent:
        """A token of a text-level server: its text and probabilities, no id (TEXT_ID)."""
        data = raw.data if raw.data is not None else (raw.text or "").encode("utf-8")
        text = raw.text if raw.text is not None else data.decode("utf-8", "replace")
        logprob = raw.logprob if meaningful and raw.logprob is not None else math.nan
        alts: tuple[Alternative, ...] = ()
        if meaningful and k:
            ranked = sorted(raw.top, key=lambda a: -a[3])[:k]
            alts = tuple(Alternative(TEXT_ID, a[2] if a[2] is not None else (a[1] or b"").decode("utf-8", "replace"),
                                     math.exp(a[3])) for a in ranked)
        return TokenEvent(index=index, id=TEXT_ID, piece=text, bytes=data, text=text, is_special=False,
                          prob=math.exp(logprob) if not math.isnan(logprob) else math.nan, logprob=logprob,
                          sample_prob=1.0 if params.temperature == 0 else math.nan, entropy=math.nan,
                          alternatives=alts)

    def next_distribution(self, ids: list[int], k: int = 10) -> Distribution:
        """One greedy token with K alternatives. On llama.cpp (no cap on K) every token's
        probability is asked for, so the entropy is exact; elsewhere it is unknown (NaN)."""
        ids = [int(i) for i in ids]
        if not ids:
            raise UsageError("the prompt is empty", "give some text")
        self._check_ids(ids)
        full = self.caps.max_k is None and self.caps.vocab and self.caps.vocab <= FULL_DISTRIBUTION
        want = int(self.caps.vocab) if full else self._k(k)
        params = SamplingParams(temperature=0.0, max_new_tokens=1)
        path, body = self.adapter.request(self.caps, ids, params, want, 1, False)
        data = self.http.post(path, body)
        state: dict = {"stream": False}
        chunk = self.adapter.parse(data, state)
        if not chunk.tokens:
            raise RemoteError(f"{self.caps.engine} returned no token for `next`", "see the server's log")
        raw = chunk.tokens[0]
        for alt_id, data_, text, _ in raw.top:
            if alt_id is not None:
                self.tokenizer.learn(alt_id, data_, text)
        ranked = sorted(((a[0], a[3]) for a in raw.top if a[0] is not None), key=lambda a: -a[1])
        entropy = -sum(math.exp(lp) * lp for _, lp in ranked if lp > -math.inf) if full else math.nan
        top = ranked[:k]
        pieces = self.tokenizer.convert_ids_to_tokens([a for a, _ in top]) if top else []
        return Distribution(prompt_tokens=len(ids), entropy=entropy,
                            top=tuple(Alternative(a, p, math.exp(lp)) for (a, lp), p in zip(top, pieces)))

    def score(self, ids: list[int], start: int, *, alternatives: int = 5, window: int | None = None, progress=None):
        raise LlmchatError(f"scoring needs the probabilities of given tokens, which {self.caps.engine} does not return "
                           "over this API", "score with a local model (-m smollm2, or a local copy of the weights)")

    def forget(self) -> None:
        """The server keeps its own prompt cache (reported as reused tokens): nothing to drop."""

    def close(self) -> None:
        self.http.close()


def reachability(spec: ModelSpec, seconds: float = 1.0) -> tuple[bool, str]:
    """For `llmchat models`: does the server answer within `seconds`? (yes/no and why)"""
    import httpx

    try:
        response = httpx.get(spec.location.rstrip("/") + "/v1/models", timeout=seconds, trust_env=False,
                             headers=_auth(spec))
    except httpx.HTTPError as exc:
        reason = "refused" if "refused" in str(exc).lower() else type(exc).__name__
        return False, f"unreachable ({reason})"
    if response.status_code in (401, 403):
        return False, f"reachable, but the key is refused ({response.status_code}; ${spec.api_key_env or 'no key'})"
    return response.status_code < 500, f"reachable ({spec.engine or 'engine by probe'}, HTTP {response.status_code})"


def _auth(spec: ModelSpec) -> dict:
    key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def describe_remote(source: RemoteEngine) -> dict:
    """`models show` for a server: what it was probed to do. The key's variable is named, its value never."""
    caps, spec = source.caps, source.spec
    key = spec.api_key_env
    return {"alias": spec.alias, "description": spec.description, "source": "remote", "location": spec.location,
            "engine": caps.engine, "served_model": caps.model, "served": ", ".join(caps.served) or "-",
            "context_length": source.context_length,
            "max_alternatives": "no cap" if caps.max_k is None else caps.max_k,
            "probabilities": {"raw": "raw (the model distribution, before sampling)",
                              "processed": "processed (after temperature)", "none": "none"}[caps.probs],
            "token_ids": "yes" if caps.token_ids else "no (text level)",
            "server_template": "yes" if caps.server_template else "no (local template)",
            "server_tokenize": "yes" if caps.server_tokenize else "no",
            "vocab_size": caps.vocab, "family": source.family.name,
            "tokenizer": spec.tokenizer or "the server's (pieces from its bytes)",
            "api_key_env": f"{key} ({'set' if os.environ.get(key) else 'not set'})" if key else "-",
            "notes": "; ".join(caps.notes) or "-"}
