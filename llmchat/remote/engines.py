"""One adapter per remote engine: what it can do (`Capabilities`), how llmchat's requests map to
its API, and how its answers map back to plain tokens (`RawToken`).

The request and response shapes were read in each engine's source and documentation:

- llama.cpp `llama-server` (tools/server in the llama.cpp that llama-cpp-python 0.3.36 vendors;
  run for real by the tests): `/completion` with prompt ids, `n_probs`, `post_sampling_probs`
  false (the full-vocabulary softmax before sampling), `return_tokens`; `/tokenize`,
  `/detokenize`, `/apply-template`, `/props`.
- vLLM (docs: serving/openai_compatible_server.md, entrypoints/openai/protocol.py): `/v1/completions`
  with prompt ids, `logprobs` (capped by `--max-logprobs`, 20 by default), `return_tokens_as_token_ids`;
  `/tokenize` (with `messages`: the server's template), `/detokenize`, `/v1/models` (`max_model_len`).
- SGLang (docs: backend/native_api.md, sampling_params.md): `/generate` with `input_ids`,
  `return_logprob`, `top_logprobs_num`; cumulative `meta_info` lists while streaming.
- plain OpenAI-compatible servers: `/v1/chat/completions` with `logprobs`/`top_logprobs` (≤ 20):
  text only, no ids.

Nothing here does I/O except through the `Http` it is given.
"""

from __future__ import annotations

import re

from ..errors import RemoteError
from .base import Capabilities, Chunk, Engine, RawToken, _choose, _first_model
from .http import Http

class LlamaCpp(Engine):
    name = "llama.cpp"

    def probe(self) -> Capabilities:
        props = self.http.get("/props")
        if not isinstance(props, dict) or "default_generation_settings" not in props:
            raise RemoteError(f"{self.http.base_url}/props is not llama-server's", "check `engine =` and the URL")
        rows, served = _first_model(self.http)
        meta = rows[0].get("meta", {}) if rows else {}
        settings = props.get("default_generation_settings", {})
        return Capabilities(
            engine=self.name, model=_choose(served, self.served_model, self.http.base_url) if served else "",
            served=served, context=int(settings.get("n_ctx") or meta.get("n_ctx") or 0) or None, max_k=None,
            probs="raw", token_ids=True, server_template=bool(props.get("chat_template")), server_tokenize=True,
            vocab=meta.get("n_vocab"), bos=props.get("bos_token"), eos=props.get("eos_token"),
            chat_template=props.get("chat_template") or None)

    def tokenize(self, caps, text, add_special):
        return [int(t) for t in self.http.post("/tokenize", {"content": text, "add_special": add_special,
                                                              "parse_special": True})["tokens"]]

    def tokenize_pieces(self, caps, text, add_special, parse_special=True):
        rows = self.http.post("/tokenize", {"content": text, "add_special": add_special,
                                             "parse_special": parse_special, "with_pieces": True})["tokens"]
        out = []
        for row in rows:
            piece = row["piece"]
            out.append((int(row["id"]), bytes(piece) if isinstance(piece, list) else piece.encode("utf-8")))
        return out

    def detokenize(self, caps, ids):
        return str(self.http.post("/detokenize", {"tokens": list(ids)})["content"])

    def template_text(self, caps, messages, add_generation_prompt):
        body = {"messages": messages, "add_generation_prompt": add_generation_prompt}
        return str(self.http.post("/apply-template", body)["prompt"])

    def template_ids(self, caps, messages, add_generation_prompt):
        prompt = self.template_text(caps, messages, add_generation_prompt)
        return self.tokenize(caps, prompt, True)  # what llama-server's own chat endpoint does with it

    def request(self, caps, ids, params, k, max_tokens, stream):
        body = {"prompt": list(ids), "n_predict": max_tokens, "n_probs": k, "post_sampling_probs": False,
                "return_tokens": True, "stream": stream, "cache_prompt": True,
                "temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
                "min_p": params.min_p, "repeat_penalty": params.repetition_penalty, "repeat_last_n": len(ids) + max_tokens,  # the whole context, as ours
                # llama-server's other samplers default on (typical, xtc, dry off): turn them off explicitly
                "typical_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
        if caps.model:
            body["model"] = caps.model
        if params.seed is not None:
            body["seed"] = params.seed
        return "/completion", body

    def parse(self, data, state):
        chunk = Chunk()
        probs = data.get("completion_probabilities") or []
        ids = data.get("tokens") or []
        for n, row in enumerate(probs):
            top = tuple((int(a["id"]), bytes(a.get("bytes", [])), a.get("token"), float(a["logprob"]))
                        for a in row.get("top_logprobs", []))
            chunk.tokens.append(RawToken(int(row["id"]), bytes(row.get("bytes", [])), row.get("token"),
                                         float(row["logprob"]), top))
        if not probs:  # n_probs 0: ids only
            chunk.tokens += [RawToken(int(i), None, None, None) for i in ids]
        if data.get("stop"):
            chunk.done = True
            chunk.reason = {"eos": "eos", "word": "stop", "limit": "length"}.get(data.get("stop_type"), "length")
            timings = data.get("timings") or {}
            chunk.cached_tokens = timings.get("cache_n")
            chunk.prompt_tokens = data.get("tokens_evaluated")
            chunk.server_ms = {"prompt_ms": timings.get("prompt_ms"), "predicted_ms": timings.get("predicted_ms"),
                               "predicted_n": timings.get("predicted_n")}
        return chunk


_TOKEN_ID = re.compile(r"^token_id:(-?\d+)$")


def _vllm_id(token: str) -> int:
    m = _TOKEN_ID.match(token)
    if not m:
        raise RemoteError(f"vLLM sent the token {token[:40]!r} instead of an id",
                          "this server ignores return_tokens_as_token_ids: use a newer vLLM or engine = \"openai\"")
    return int(m.group(1))


class Vllm(Engine):
    name = "vllm"
    MAX_K = 20  # vLLM's default --max-logprobs

    def probe(self) -> Capabilities:
        rows, served = _first_model(self.http)
        if not rows:
            raise RemoteError(f"{self.http.base_url}/v1/models lists no models", "is this a vLLM server?")
        model = _choose(served, self.served_model, self.http.base_url)
        row = next(r for r in rows if r.get("id") == model)
        return Capabilities(engine=self.name, model=model, served=served, context=row.get("max_model_len"),
                            max_k=self.MAX_K, probs="raw", token_ids=True, server_template=True,
                            server_tokenize=True,
                            notes=("at most 20 alternatives unless the server runs with --max-logprobs N",))

    def tokenize(self, caps, text, add_special):
        return [int(t) for t in self.http.post("/tokenize", {"model": caps.model, "prompt": text,
                                                              "add_special_tokens": add_special})["tokens"]]

    def detokenize(self, caps, ids):
        return str(self.http.post("/detokenize", {"model": caps.model, "tokens": list(ids)})["prompt"])

    def template_ids(self, caps, messages, add_generation_prompt):
        reply = self.http.post("/tokenize", {"model": caps.model, "messages": messages,
                                             "add_generation_prompt": add_generation_prompt,
                                             "add_special_tokens": False})
        return [int(t) for t in reply["tokens"]]

    def request(self, caps, ids, params, k, max_tokens, stream):
        body = {"model": caps.model, "prompt": list(ids), "max_tokens": max_tokens, "stream": stream,
                "temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k or -1,
                "min_p": params.min_p, "repetition_penalty": params.repetition_penalty,
                "return_tokens_as_token_ids": True, "return_token_ids": True, "skip_special_tokens": False,
                "spaces_between_special_tokens": False}
        if k:
            body["logprobs"] = k
        if stream:
            body["stream_options"] = {"include_usage": True}
        if params.seed is not None:
            body["seed"] = params.seed
        return "/v1/completions", body

    def parse(self, data, state):
        chunk = Chunk()
        for choice in data.get("choices") or []:
            logprobs = choice.get("logprobs") or {}
            tokens = logprobs.get("tokens") or []
            values = logprobs.get("token_logprobs") or []
            tops = logprobs.get("top_logprobs") or []
            if tokens:
                for n, token in enumerate(tokens):
                    top = tops[n] if n < len(tops) and tops[n] else {}
                    alts = sorted(((_vllm_id(t), None, None, float(v)) for t, v in top.items()), key=lambda a: -a[3])
                    value = values[n] if n < len(values) else None
                    chunk.tokens.append(RawToken(_vllm_id(token), None, None,
                                                 None if value is None else float(value), tuple(alts)))
            else:
                chunk.tokens += [RawToken(int(i), None, None, None) for i in choice.get("token_ids") or []]
            if choice.get("finish_reason"):
                reason = choice["finish_reason"]
                if reason == "abort":
                    raise RemoteError("vllm aborted the request (finish_reason \"abort\")", "see the server's log")
                state["reason"] = "stop" if reason == "stop" and choice.get("stop_reason") not in (None,) and \
                    isinstance(choice.get("stop_reason"), str) else ("eos" if reason == "stop" else "length")
        usage = data.get("usage")
        if usage:
            chunk.prompt_tokens = usage.get("prompt_tokens")
            chunk.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if state.get("reason") and (usage or not state.get("stream", True)):
            chunk.done, chunk.reason = True, state["reason"]
        return chunk


class SGLang(Engine):
    name = "sglang"
    supports = {"top_k", "top_p", "min_p", "repetition_penalty", "seed"}

    def probe(self) -> Capabilities:
        info = self.http.get("/get_model_info")
        if not isinstance(info, dict) or "model_path" not in info:
            raise RemoteError(f"{self.http.base_url}/get_model_info is not SGLang's", "check `engine =` and the URL")
        rows, served = _first_model(self.http)
        model = _choose(served or (info["model_path"],), self.served_model, self.http.base_url)
        context = next((r.get("max_model_len") for r in rows if r.get("id") == model), None)
        return Capabilities(engine=self.name, model=model, served=served or (info["model_path"],), context=context,
                            max_k=None, probs="processed", token_ids=True, server_template=False,
                            server_tokenize=False,
                            notes=("probabilities are after temperature unless the server runs with "
                                   "SGLANG_RETURN_ORIGINAL_LOGPROB=1 (RETURN_ORIGINAL_LOGPROB=1 before sglang 0.5.4)",))

    def request(self, caps, ids, params, k, max_tokens, stream):
        sampling = {"max_new_tokens": max_tokens, "temperature": params.temperature, "top_p": params.top_p,
                    "top_k": params.top_k or -1, "min_p": params.min_p,
                    "repetition_penalty": params.repetition_penalty, "skip_special_tokens": False}
        if params.seed is not None:
            sampling["sampling_seed"] = params.seed
        return "/generate", {"input_ids": list(ids), "sampling_params": sampling, "return_logprob": True,
                             "top_logprobs_num": k, "return_text_in_logprobs": True, "stream": stream}

    def parse(self, data, state):
        chunk = Chunk()
        meta = data.get("meta_info") or {}
        tokens = meta.get("output_token_logprobs") or []
        tops = meta.get("output_top_logprobs") or []
        # Streaming, the lists are cumulative by default and deltas under --incremental-streaming-output;
        # output_token_logprobs_length (cumulative in both) tells which (tests/data/remote/sglang_*.json)
        seen = state.get("seen", 0)
        total = meta.get("output_token_logprobs_length")
        delta = isinstance(total, int) and len(tokens) < total
        start = 0 if delta else seen
        offset = total - len(tokens) if delta else 0
        for n in range(start, len(tokens)):
            logprob, token_id, text = (list(tokens[n]) + [None, None, None])[:3]
            top = tuple((int(a[1]), None, a[2] if len(a) > 2 else None, float(a[0]))
                        for a in (tops[n] if n < len(tops) and tops[n] else []))
            chunk.tokens.append(RawToken(int(token_id), None, text, None if logprob is None else float(logprob), top))
        state["seen"] = offset + len(tokens)
        finish = meta.get("finish_reason")
        if finish:
            kind = finish.get("type") if isinstance(finish, dict) else str(finish)
            matched = finish.get("matched") if isinstance(finish, dict) else None
            if kind == "abort":
                message = str(finish.get("message", "aborted") if isinstance(finish, dict) else finish)
                if re.search(r"length|context", message, re.I):
                    from ..errors import ContextOverflow

                    raise ContextOverflow(f"the prompt does not fit the server's context ({message[:160]})",
                                          "shorten it, lower max_tokens, or use --truncate")
                raise RemoteError(f"sglang aborted the request: {message[:160]}", "see the server's log")
            chunk.done = True
            chunk.reason = "length" if kind == "length" else ("stop" if isinstance(matched, str) else "eos")
            chunk.prompt_tokens, chunk.cached_tokens = meta.get("prompt_tokens"), meta.get("cached_tokens")
        return chunk


class OpenAI(Engine):
    """Text level: a chat-completions server takes messages, not ids, and sends token strings."""

    name = "openai"
    supports = {"top_p", "seed"}
    MAX_K = 20

    def probe(self) -> Capabilities:
        rows, served = _first_model(self.http)
        model = _choose(served, self.served_model, self.http.base_url) if served or not self.served_model \
            else self.served_model
        return Capabilities(engine=self.name, model=model, served=served, context=None, max_k=self.MAX_K,
                            probs="raw", token_ids=False, server_template=True, server_tokenize=False,
                            notes=("text level: no token ids, so /branch, `next`, exact token views and "
                                   "`tokenize` are unavailable",))

    def chat_request(self, caps, messages, params, k, max_tokens, stream) -> tuple[str, dict]:
        body = {"model": caps.model, "messages": messages, "max_tokens": max_tokens, "stream": stream,
                "temperature": params.temperature, "top_p": params.top_p}
        if k:
            body["logprobs"], body["top_logprobs"] = True, min(k, self.MAX_K)
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        return "/v1/chat/completions", body

    def parse(self, data, state):
        chunk = Chunk()
        for choice in data.get("choices") or []:
            content = ((choice.get("logprobs") or {}).get("content")) or []
            if content:
                for row in content:
                    top = tuple((None, bytes(a["bytes"]) if a.get("bytes") is not None else None, a.get("token"),
                                 float(a["logprob"])) for a in row.get("top_logprobs") or [])
                    chunk.tokens.append(RawToken(None, bytes(row["bytes"]) if row.get("bytes") is not None else None,
                                                 row.get("token"), float(row["logprob"]), top))
            else:
                text = (choice.get("delta") or choice.get("message") or {}).get("content")
                if text:
                    chunk.tokens.append(RawToken(None, text.encode("utf-8"), text, None))
            if choice.get("finish_reason"):
                state["reason"] = "length" if choice["finish_reason"] == "length" else "eos"
        usage = data.get("usage")
        if usage:
            chunk.prompt_tokens = usage.get("prompt_tokens")
            chunk.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if state.get("reason") and (usage or not state.get("stream", True)):
            chunk.done, chunk.reason = True, state["reason"]
        return chunk


ENGINES: dict[str, type[Engine]] = {"llama.cpp": LlamaCpp, "vllm": Vllm, "sglang": SGLang, "openai": OpenAI}


def detect(http: Http) -> str:
    """Which engine serves `http`: llama-server has /props, SGLang /get_model_info, vLLM lists
    `max_model_len` in /v1/models; anything else that lists models is OpenAI-compatible."""
    props = http.get("/props", ok_404=True)
    if isinstance(props, dict) and "default_generation_settings" in props:
        return "llama.cpp"
    info = http.get("/get_model_info", ok_404=True)
    if isinstance(info, dict) and "model_path" in info:
        return "sglang"
    rows, _ = _first_model(http)
    if rows and any("max_model_len" in r for r in rows):
        return "vllm"
    return "openai"
