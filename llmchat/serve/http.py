"""`llmchat serve --http`: the OpenAI-compatible face of the server, for the tools people already use.

An ASGI app (starlette) on uvicorn, in front of one `engine.source.LocalModel`: the same engine,
prefix cache and event codec as the Unix socket and `ask --json`, so the numbers are the same.
Endpoints, in OpenAI's shapes with vLLM's field names for what OpenAI lacks:

  GET  /health                 {"status": "ok"} (503 while the model loads)
  GET  /v1/models              the one model, with max_model_len
  POST /v1/chat/completions    messages → answer (stream: SSE); logprobs + top_logprobs
  POST /v1/completions         prompt as text or token ids; logprobs: K; echo (prompt logprobs
                               computed by scoring the prompt, the first token null); stream
  POST /tokenize, /detokenize  vLLM's shapes (prompt or messages, add_generation_prompt, return_token_strs)

Every logprob is under the *model distribution* (softmax of the logits before temperature,
top-k/top-p/min-p): raw, as `llmchat ask --json` reports them. Per token the answer carries the
id (`token_id`, and `token:N` strings with `return_tokens_as_token_ids`), the exact bytes and the
top alternatives; each choice also has `token_ids`.

The engine decodes one sequence at a time: requests wait in order for it (at most `max_queue`
waiting, then 429), a generation runs in one worker thread, and a client that goes away stops it
after the current token. Errors have OpenAI's body, {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from typing import Any, Callable

from ..engine.events import Finished, TokenEvent
from ..engine.sampling import SamplingParams
from ..engine.source import ModelSource
from ..errors import LlmchatError, UsageError
from ..prompt.build import opens_thinking, raw_ids
from ..prompt.thinking import ThinkSplitter
from ..signals import StopFlag
from .engine_queue import Engine
from .openai_api import (FINISH, ApiError, Limits, Tokens, alt_logprob, delta, echo_logprobs, finite, from_llmchat,
                         messages_of, prompt_logprobs, sampling, top_count, usage)

# ---------------------------------------------------------------------------------- the app
def make_app(engine: Engine, defaults: SamplingParams, *, api_key: str | None = None, lifespan=None):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    limits = engine.limits

    def error(exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    def endpoint(handler):
        async def wrapped(request: Request):
            try:
                if api_key is not None and not secrets.compare_digest(
                        request.headers.get("authorization", ""), f"Bearer {api_key}"):
                    raise ApiError(401, "missing or wrong API key (send it as 'Authorization: Bearer KEY')",
                                   "authentication_error", code="invalid_api_key")
                return await handler(request)
            except ApiError as exc:
                return error(exc)
            except LlmchatError as exc:
                return error(from_llmchat(exc))
        return wrapped

    async def body_of(request: Request) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body:
            raise ApiError(413, f"the request body is {size} bytes; the limit is {limits.max_body}")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.max_body:
                raise ApiError(413, f"the request body is larger than {limits.max_body} bytes")
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def check_model(body: dict, source: ModelSource) -> None:
        name = body.get("model")
        if name not in (None, "", source.spec.alias):
            raise ApiError(404, f"the model '{name}' does not exist; this server serves '{source.spec.alias}'",
                           param="model", code="model_not_found")

    async def health(request: Request):
        engine.ready()
        last = engine.last
        return JSONResponse({"status": "ok", "busy": engine.lock.locked(), "waiting": engine.waiting,
                             "served": engine.served,
                             "last": {"finish_reason": FINISH[last.reason], "completion_tokens": last.generated_tokens}
                             if last else None})

    async def models(request: Request):
        source = engine.ready()
        return JSONResponse({"object": "list", "data": [
            {"id": source.spec.alias, "object": "model", "created": int(time.time()), "owned_by": "llmchat",
             "max_model_len": source.context_length, "weights": source.weights, "backend": source.backend}]})

    def sse(chunks) -> StreamingResponse:
        async def frames():
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=True)}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def generate(source, ids, params, k, stop):
        """Events of one generation; a client that disconnects cancels the stream, which sets `stop`."""
        make = lambda: source.generate(ids, params, alternatives=k, should_stop=stop)  # noqa: E731
        async for item in engine.stream(make, stop):
            yield item

    async def chat(request: Request):
        body = await body_of(request)
        source = engine.ready()
        check_model(body, source)
        messages = messages_of(body, source.spec.system)
        want_logprobs = bool(body.get("logprobs"))
        k = top_count(body, "top_logprobs", limits, want_logprobs)
        ids = await engine.call(lambda: source.render(messages))
        params = sampling(body, defaults, len(ids), source.context_length, limits)
        records = Tokens(source, bool(body.get("return_tokens_as_token_ids")))
        family = source.family
        splitter = ThinkSplitter(family.think_open, family.think_close, opens_thinking(source, ids))
        ident, created, alias = f"chatcmpl-{secrets.token_hex(12)}", int(time.time()), source.spec.alias
        stop = StopFlag()
        engine.admit()
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            async def chunks():
                base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": alias}
                yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}]}
                async for item in generate(source, ids, params, k, stop):
                    if isinstance(item, Finished):
                        tail = splitter.finish()
                        if tail:
                            yield {**base, "choices": [{"index": 0, "delta": delta(tail), "logprobs": None,
                                                        "finish_reason": None}]}
                        yield {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                    "finish_reason": FINISH[item.reason]}]}
                        if include_usage:
                            yield {**base, "choices": [], "usage": usage(item)}
                        return
                    pieces = splitter.feed(item.text)
                    yield {**base, "choices": [{"index": 0, "delta": delta(pieces), "token_ids": [item.id],
                                                "logprobs": {"content": [records.chat(item)]} if want_logprobs else None,
                                                "finish_reason": None}]}
            return sse(chunks())
        events, finished = [], None
        async for item in generate(source, ids, params, k, stop):
            if isinstance(item, Finished):
                finished = item
            else:
                events.append(item)
                splitter.feed(item.text)
        splitter.finish()
        message = {"role": "assistant", "content": splitter.answer_text}
        if splitter.thinking_text:
            message["reasoning_content"] = splitter.thinking_text
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": created, "model": alias,
            "choices": [{"index": 0, "message": message, "finish_reason": FINISH[finished.reason],
                         "token_ids": [e.id for e in events],
                         "logprobs": {"content": [records.chat(e) for e in events]} if want_logprobs else None}],
            "usage": usage(finished), "prompt_token_ids": ids, "seed": params.seed})

    async def completions(request: Request):
        body = await body_of(request)
        source = engine.ready()
        check_model(body, source)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            if not prompt:
                raise ApiError(400, "'prompt' is empty", param="prompt")
            ids = await engine.call(lambda: raw_ids(source, prompt))
        elif isinstance(prompt, list) and prompt and all(isinstance(i, int) and not isinstance(i, bool) for i in prompt):
            vocab = len(source.tokenizer.get_vocab())
            bad = [i for i in prompt if not 0 <= i < vocab]
            if bad:
                raise ApiError(400, f"token id {bad[0]} is outside the vocabulary (0…{vocab - 1})", param="prompt")
            ids = list(prompt)
        else:
            raise ApiError(400, "'prompt' must be a string or a list of token ids (one prompt per request)",
                           param="prompt")
        k = top_count(body, "logprobs", limits) if body.get("logprobs") is not None else None
        params = sampling(body, defaults, len(ids), source.context_length, limits, default_max=16)
        records = Tokens(source, bool(body.get("return_tokens_as_token_ids")))
        echo = bool(body.get("echo"))
        ident, created, alias = f"cmpl-{secrets.token_hex(12)}", int(time.time()), source.spec.alias
        prompt_records = None
        if echo:
            prompt_records = await engine.call(lambda: prompt_logprobs(source, ids, k or 0, records))
        stop = StopFlag()
        engine.admit()

        def choice_logprobs(events: list[TokenEvent], offset: int) -> dict:
            out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for e in events:
                out["tokens"].append(records.name(e.id, e.bytes, e.piece))
                out["token_logprobs"].append(finite(e.logprob))
                out["top_logprobs"].append({records.name(a.id, piece=a.piece): alt_logprob(a.prob) for a in e.alternatives})
                out["text_offset"].append(offset)
                offset += len(e.text)
            return out

        if body.get("stream"):
            async def chunks():
                base = {"id": ident, "object": "text_completion", "created": created, "model": alias}
                offset = 0
                if echo:
                    text = "".join(r["text"] for r in prompt_records)
                    yield {**base, "choices": [{"index": 0, "text": text, "token_ids": ids, "finish_reason": None,
                                                "logprobs": echo_logprobs(prompt_records) if k is not None else None}]}
                    offset = len(text)
                async for item in generate(source, ids, params, k or 0, stop):
                    if isinstance(item, Finished):
                        yield {**base, "choices": [{"index": 0, "text": "", "logprobs": None,
                                                    "finish_reason": FINISH[item.reason]}], "usage": usage(item)}
                        return
                    yield {**base, "choices": [{"index": 0, "text": item.text, "token_ids": [item.id],
                                                "logprobs": choice_logprobs([item], offset) if k is not None else None,
                                                "finish_reason": None}]}
                    offset += len(item.text)
            return sse(chunks())
        events, finished = [], None
        async for item in generate(source, ids, params, k or 0, stop):
            if isinstance(item, Finished):
                finished = item
            else:
                events.append(item)
        text = "".join(e.text for e in events)
        logprobs = None
        if echo:
            head = "".join(r["text"] for r in prompt_records)
            if k is not None:
                logprobs = echo_logprobs(prompt_records)
                rest = choice_logprobs(events, len(head))
                for key in logprobs:
                    logprobs[key] += rest[key]
            text = head + text
        elif k is not None:
            logprobs = choice_logprobs(events, 0)
        return JSONResponse({
            "id": ident, "object": "text_completion", "created": created, "model": alias,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": FINISH[finished.reason],
                         "token_ids": [e.id for e in events], "prompt_token_ids": ids}],
            "usage": usage(finished), "seed": params.seed})

    async def tokenize(request: Request):
        body = await body_of(request)
        source = engine.ready()
        check_model(body, source)
        if "messages" in body:
            messages = messages_of(body, None)
            add = bool(body.get("add_generation_prompt", True))
            ids = await engine.call(lambda: source.render(messages, add_generation_prompt=add))
        elif isinstance(body.get("prompt"), str):
            special = bool(body.get("add_special_tokens", True))
            ids = list(source.tokenizer.encode(body["prompt"], add_special_tokens=special))
        else:
            raise ApiError(400, "give 'prompt' (a string) or 'messages'", param="prompt")
        out: dict[str, Any] = {"count": len(ids), "max_model_len": source.context_length, "tokens": ids}
        if body.get("return_token_strs"):
            out["token_strs"] = source.tokenizer.convert_ids_to_tokens(ids)
        return JSONResponse(out)

    async def detokenize(request: Request):
        body = await body_of(request)
        source = engine.ready()
        check_model(body, source)
        ids = body.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ApiError(400, "'tokens' must be a list of token ids", param="tokens")
        vocab = len(source.tokenizer.get_vocab())
        if any(not 0 <= i < vocab for i in ids):
            raise ApiError(400, f"a token id is outside the vocabulary (0…{vocab - 1})", param="tokens")
        return JSONResponse({"prompt": source.tokenizer.decode(ids, skip_special_tokens=False)})

    routes = [Route("/health", endpoint(health)), Route("/v1/models", endpoint(models)),
              Route("/v1/chat/completions", endpoint(chat), methods=["POST"]),
              Route("/v1/completions", endpoint(completions), methods=["POST"]),
              Route("/tokenize", endpoint(tokenize), methods=["POST"]),
              Route("/detokenize", endpoint(detokenize), methods=["POST"])]

    async def not_found(request, exc):
        return error(ApiError(404, f"no endpoint {request.method} {request.url.path}", code="not_found"))

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)


# ---------------------------------------------------------------------------------- running it
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--http {text!r}: give [HOST:]PORT", "e.g. --http 8080 or --http 0.0.0.0:8080")
    return host, int(port)


def check_auth(host: str, api_key_env: str | None, insecure: bool) -> str | None:
    """The API key (from the named environment variable), or None; a non-loopback address needs one."""
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UsageError(f"--api-key-env {api_key_env}: the variable is not set or empty",
                             f"export {api_key_env}=... first")
    if host not in LOOPBACK and key is None and not insecure:
        raise UsageError(f"--http on {host} would let anyone on the network use the model",
                         "add --api-key-env NAME (a bearer token from that variable), or --insecure-no-auth")
    return key


def serve_http(spec, load: Callable[[], ModelSource], defaults: SamplingParams, *, host: str, port: int,
               api_key: str | None, limits: Limits) -> int:
    """Bind first (a busy port fails at once; requests during the load get 503), then load the
    model in a thread, then serve until SIGINT/SIGTERM."""
    import contextlib

    import uvicorn

    engine = Engine(limits)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        def load_it():
            try:
                engine.source = load()
                where = server.servers[0].sockets[0].getsockname() if server.servers else (host, port)
                print(f"llmchat: serving {spec.alias} on http://{_url_host(host)}:{where[1]}/v1", file=sys.stderr,
                      flush=True)
            except BaseException as exc:  # noqa: BLE001  (reported by serve_http after shutdown)
                engine.load_error = exc
                server.should_exit = True
        state["loader"] = threading.Thread(target=load_it, name="llmchat-load", daemon=True)
        state["loader"].start()
        yield
        engine.executor.shutdown(wait=False, cancel_futures=True)

    app = make_app(engine, defaults, api_key=api_key, lifespan=lifespan)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        if exc.code:
            raise LlmchatError(f"cannot listen on {host}:{port} (in use, or not allowed)",
                               "pick another port with --http PORT") from None
        raise
    if engine.load_error is not None:
        raise engine.load_error
    if not server.started:
        raise LlmchatError(f"cannot listen on {host}:{port} (in use, or not allowed)", "pick another port with --http PORT")
    print(f"llmchat: stopped serving {spec.alias}", file=sys.stderr, flush=True)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
