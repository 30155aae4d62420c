"""`llmchat serve --http`: the OpenAI-compatible API, with the real `openai` client, httpx and the
real server process; the app's limits and errors through starlette's TestClient on a real model."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time

import httpx
import openai
import pytest

from conftest import LLMCHAT

QUESTION = "What is 2+2?"


class HttpServer:
    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([LLMCHAT, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))
        line = _line(self.proc, 180)
        assert line.startswith("llmchat: serving ") and "http://" in line, line
        self.url = line.split(" on ", 1)[1].strip()  # http://127.0.0.1:PORT/v1
        self.base = self.url.removesuffix("/v1")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


def _line(proc, timeout: float) -> str:
    selector, data, end = selectors.DefaultSelector(), b"", time.monotonic() + timeout
    selector.register(proc.stderr, selectors.EVENT_READ)
    while not data.endswith(b"\n") and time.monotonic() < end:
        if selector.select(timeout=1):
            chunk = os.read(proc.stderr.fileno(), 1)
            if not chunk:
                break
            data += chunk
    return data.decode()


@pytest.fixture(scope="module")
def smol():
    """smollm2 on the float weights (`--quant none`), so that a request's numbers do not depend on
    which prefix the server's cache already held (the int4 kernels differ by ~0.05 nats between a
    many-token prefill and a one-token step; see the README's score section)."""
    server = HttpServer("serve", "--http", "0", "--quant", "none")
    yield server
    server.close()


@pytest.fixture(scope="module")
def keyed(tiny):
    """tiny-llama (context 256) behind an API key."""
    server = HttpServer("--models", str(tiny["toml"]), "serve", "-m", "tiny-llama", "--http", "127.0.0.1:0",
                        "--api-key-env", "LLMCHAT_TEST_KEY", "--max-tokens-limit", "200", env={"LLMCHAT_TEST_KEY": "s3cret"})
    yield server
    server.close()


def client(server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=120)


def test_chat_logprobs_equal_ask_json(smol, cli):
    reply = client(smol).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                                 temperature=0, max_tokens=12, logprobs=True, top_logprobs=3, seed=1)
    asked = json.loads(cli("ask", "--quant", "none", "--json", "--logprobs", "3", "-t", "0", "--seed", "1", "-n", "12",
                           QUESTION).stdout)
    choice = reply.choices[0]
    assert choice.message.content == asked["answer"] and choice.finish_reason == "stop"
    content = choice.logprobs.content
    assert [c.model_extra["token_id"] for c in content] == [t["id"] for t in asked["tokens"]]
    assert [c.logprob for c in content] == pytest.approx([t["logprob"] for t in asked["tokens"]], abs=1e-4)
    for c, t in zip(content, asked["tokens"]):
        assert bytes(c.bytes) == bytes.fromhex(t["bytes"])
        assert [a.model_extra["token_id"] for a in c.top_logprobs] == [a["id"] for a in t["top"]]
        assert [a.logprob for a in c.top_logprobs] == sorted((a.logprob for a in c.top_logprobs), reverse=True)
    assert reply.usage.prompt_tokens == asked["prompt_tokens"]
    assert reply.usage.completion_tokens == asked["generated_tokens"]


def test_chat_stream_equals_the_whole_answer(smol):
    kwargs = dict(model="smollm2", messages=[{"role": "user", "content": "Name a colour."}], temperature=0, max_tokens=16)
    whole = client(smol).chat.completions.create(**kwargs).choices[0]
    chunks = list(client(smol).chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.finish_reason
    assert chunks[-1].usage.completion_tokens == len(whole.model_extra["token_ids"])


def test_completions_with_prompt_ids_and_echo(smol, cli):
    tokens = httpx.post(f"{smol.base}/tokenize", json={"prompt": "The capital of France is", "return_token_strs": True}).json()
    ids = tokens["tokens"]
    assert tokens["count"] == len(ids) and tokens["token_strs"][-1] == "Ġis" and tokens["max_model_len"] == 8192
    assert httpx.post(f"{smol.base}/detokenize", json={"tokens": ids}).json()["prompt"] == "The capital of France is"
    out = client(smol).completions.create(model="smollm2", prompt=ids, max_tokens=3, temperature=0, logprobs=2, echo=True)
    choice = out.choices[0]
    assert choice.text.startswith("The capital of France is Paris")
    lp = choice.logprobs
    assert len(lp.tokens) == len(ids) + 3 and lp.token_logprobs[0] is None  # the first prompt token has no context
    assert lp.text_offset[:2] == [0, len("The")]
    scored = json.loads(cli("score", "--quant", "none", "--json", "-k", "2", "The capital of France is").stdout)["tokens"]
    assert lp.token_logprobs[1:len(ids)] == pytest.approx([t["logprob"] for t in scored], abs=1e-4)
    assert list(lp.top_logprobs[len(ids)])[0] == " Paris"
    plain = client(smol).completions.create(model="smollm2", prompt="The capital of France is", max_tokens=3, temperature=0)
    assert plain.choices[0].text == choice.text[len("The capital of France is"):]


def test_sse_framing(smol):
    with httpx.stream("POST", f"{smol.url}/completions", json={"prompt": "Once upon a time", "max_tokens": 5,
                                                               "stream": True, "temperature": 0}, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    frames = raw.split("\n\n")
    assert frames[-1] == "" and frames[-2] == "data: [DONE]"
    events = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
    assert all(f.startswith("data: ") for f in frames[:-1])
    assert [e["choices"][0]["finish_reason"] for e in events][-1] == "length" and len(events) == 6


def test_a_disconnect_stops_the_generation_and_frees_the_server(smol):
    body = {"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 2000,
            "temperature": 1.0, "stream": True}
    with httpx.stream("POST", f"{smol.url}/chat/completions", json=body, timeout=60) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n > 6:
                break  # leave mid-stream
    health = httpx.get(f"{smol.base}/health").json()
    for _ in range(600):  # the engine finishes its current token, then is free (polled, no time limit asserted)
        if not health["busy"]:
            break
        time.sleep(0.1)
        health = httpx.get(f"{smol.base}/health").json()
    assert not health["busy"] and health["last"]["finish_reason"] == "abort"
    assert health["last"]["completion_tokens"] < 2000
    quick = client(smol).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=2, temperature=0)
    assert quick.usage.completion_tokens == 2


def test_errors_have_openai_statuses_and_bodies(keyed, smol):
    good = client(keyed, "s3cret")
    assert good.models.list().data[0].id == "tiny-llama"
    with pytest.raises(openai.AuthenticationError) as info:
        client(keyed, "wrong").models.list()
    assert info.value.status_code == 401 and "API key" in info.value.message and "s3cret" not in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        good.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert "'tiny-llama'" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        good.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], temperature=-1)
    assert "temperature" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        good.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "word " * 50}],
                                     max_tokens=150)
    assert info.value.code == "context_length_exceeded" and "256 tokens" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        good.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=500)
    assert "between 1 and 200" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client(smol).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                             logprobs=True, top_logprobs=21)
    assert "--max-logprobs" in info.value.message
    bad = httpx.post(f"{keyed.url}/completions", headers={"Authorization": "Bearer s3cret"},
                     json={"prompt": [1, 2, 10 ** 9]})
    assert bad.status_code == 400 and "outside the vocabulary" in bad.json()["error"]["message"]
    assert httpx.get(f"{keyed.base}/nope").status_code == 404


def test_loading_busy_and_oversized_requests(loaded):
    """The app itself (no socket): 503 before the model is there, 429 when the queue is full, 413
    for a body over the limit."""
    from starlette.testclient import TestClient

    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel
    from llmchat.serve.http import Engine, Limits, make_app

    engine = Engine(Limits(max_queue=1, max_body=1000))
    with TestClient(make_app(engine, SamplingParams())) as http:
        loading = http.get("/health")
        assert loading.status_code == 503 and loading.json()["error"]["type"] == "service_unavailable"
        engine.source = LocalModel(loaded("tiny-llama"))
        assert http.get("/health").json()["status"] == "ok"
        big = http.post("/v1/completions", content=json.dumps({"prompt": "x" * 2000}))
        assert big.status_code == 413 and "1000" in big.json()["error"]["message"]
        engine.waiting = 1  # one request already waiting
        full = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1})
        assert full.status_code == 429 and full.json()["error"]["type"] == "rate_limit_exceeded"
        engine.waiting = 0
        assert http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1}).status_code == 200


def test_a_network_bind_needs_a_key(cli):
    proc = cli("serve", "--http", "0.0.0.0:0")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--api-key-env" in proc.stderr
    proc = cli("serve", "--http", "8080", "--api-key-env", "LLMCHAT_NO_SUCH_VARIABLE")
    assert proc.returncode == 2 and "not set" in proc.stderr
