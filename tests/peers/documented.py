"""A server that answers with the stored bodies of engines that cannot run here (vLLM, SGLang,
OpenAI's API): tests/data/remote/*.json, each naming the source it was taken from. It records
every request, so a test can compare what llmchat sent with what the engine documents."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Callable

DATA = Path(__file__).resolve().parent.parent / "data" / "remote"

# a route answers (status, body): a dict is sent as JSON, a list as a server-sent-event stream
Route = Callable[[dict], tuple[int, dict | list]]


def fixture(name: str) -> dict:
    data = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    assert data.get("source"), f"{name}.json names no source"
    return data


class DocumentedServer:
    def __init__(self, routes: dict[str, Route]):
        self.routes, self.requests = routes, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, body: dict) -> None:
                owner.requests.append((self.command, self.path, body))
                route = owner.routes.get(self.path)
                status, reply = route(body) if route else (404, {"error": {"message": f"no route {self.path}"}})
                if isinstance(reply, list):
                    self.send_response(status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in reply:
                        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer({})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length) or b"{}"))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sent(self, path: str) -> list[dict]:
        """The bodies llmchat sent to `path`, in order."""
        return [body for _, p, body in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def vllm_routes() -> dict[str, Route]:
    models, tokenize = fixture("vllm_models"), fixture("vllm_tokenize")
    detok, stream, single = fixture("vllm_detokenize"), fixture("vllm_completions_stream"), fixture("vllm_completions")
    errors = fixture("vllm_errors")

    def completions(body):
        if int(body.get("logprobs") or 0) > 20:
            return errors["logprobs_too_many"]["status"], errors["logprobs_too_many"]["body"]
        return (200, stream["chunks"]) if body.get("stream") else (200, single["response"])

    return {"/v1/models": lambda body: (200, models["response"]),
            "/tokenize": lambda body: (200, tokenize["response_messages" if "messages" in body else "response_prompt"]),
            "/detokenize": lambda body: (200, detok["response"]),
            "/v1/completions": completions}


def sglang_routes(incremental: bool = False) -> dict[str, Route]:
    info, stream, single = fixture("sglang_model_info"), fixture("sglang_generate_stream"), fixture("sglang_generate")

    def generate(body):
        if body.get("stream"):
            return 200, stream["chunks_incremental" if incremental else "chunks"]
        return 200, single["response"]

    return {"/get_model_info": lambda body: (200, info["response"]),
            "/v1/models": lambda body: (200, info["models_response"]),
            "/generate": generate}


def openai_routes() -> dict[str, Route]:
    chat = fixture("openai_chat_stream")
    # GET /v1/models as OpenAI's reference shows it (openai/openai-openapi openapi.yaml, ListModelsResponse)
    models = {"object": "list", "data": [{"id": chat["request"]["model"], "object": "model", "created": 1686935002,
                                          "owned_by": "openai"}]}
    return {"/v1/models": lambda body: (200, models),
            "/v1/chat/completions": lambda body: (200, chat["chunks"])}
