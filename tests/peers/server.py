"""Real servers for the remote-engine tests: llama-server on the default GGUF, and sockets that
misbehave in the ways a network does (a proxy in front of the real llama-server that breaks
/completion on purpose, a port that accepts and never answers, a listener that is not HTTP)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

from .llama_server import binary, build, build_failure, failure_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`llama-server -m GGUF` on 127.0.0.1:<free port>; stopped by its pid."""

    def __init__(self, gguf: Path, *extra: str, log: Path):
        if not binary().is_file() and not failure_file().is_file():  # `make test` tried already: no second try
            try:
                build()
            except SystemExit:
                pass
        reason = build_failure()
        if reason:
            raise RuntimeError(f"llama-server is not available: {reason}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen([str(binary()), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
                                      "-t", "2", "-c", "2048", "--parallel", "1", "--no-webui", *extra],
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited {self.proc.returncode}: {log.read_text()[-800:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server did not become healthy in 120 s: {log.read_text()[-800:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _signal(self, number: int) -> None:
        try:
            os.kill(self.proc.pid, number)
        except ProcessLookupError:  # it died (and was reaped by another thread's wait) since poll() looked
            pass

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed node does, mid-answer."""
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Misbehaving:
    """An HTTP server that forwards everything to a real llama-server except /completion, which
    it answers according to `mode`:

    - "503x2": 503 twice, then forwards (a server that is briefly overloaded);
    - "429": 429 for ever;
    - "malformed": 200 with a body that is not JSON;
    - "bad-id": a stream whose first token id is outside the vocabulary;
    - "stall": the headers and one token, then nothing;
    - "context": forwards (the real server's own 400 for a prompt over its context).
    """

    def __init__(self, upstream: str, mode: str, tls=None):
        self.upstream, self.mode, self.hits = upstream, mode, 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, method: str, body: bytes | None):
                r = httpx.request(method, owner.upstream + self.path, content=body, timeout=30,
                                  headers={"Content-Type": "application/json"})
                self._reply(r.status_code, r.content)

            def _reply(self, status: int, body: bytes, kind: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._forward("GET", None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/completion":
                    return self._forward("POST", body)
                owner.hits += 1
                mode = owner.mode
                if mode == "503x2" and owner.hits <= 2 or mode == "429":
                    code = 503 if mode == "503x2" else 429
                    return self._reply(code, json.dumps({"error": {"code": code, "message": "busy"}}).encode())
                if mode == "malformed":
                    return self._reply(200, b"<html>not json</html>", "text/html")
                if mode in ("bad-id", "stall"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    token = 99999999 if mode == "bad-id" else 504
                    row = {"id": token, "token": "The", "bytes": [84, 104, 101], "logprob": -0.1,
                           "top_logprobs": [{"id": token, "token": "The", "bytes": [84, 104, 101], "logprob": -0.1}]}
                    self.wfile.write(b"data: " + json.dumps({"content": "The", "tokens": [token], "stop": False,
                                                             "completion_probabilities": [row]}).encode() + b"\n\n")
                    self.wfile.flush()
                    if mode == "stall":
                        time.sleep(30)
                    return
                return self._forward("POST", body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # an ssl.SSLContext: this listener speaks https
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RawListener:
    """A TCP port that either accepts and never answers (`silent`) or writes a non-HTTP banner."""

    def __init__(self, banner: bytes | None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.banner, self.conns = banner, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.banner is not None:
                threading.Thread(target=self._banner, args=(conn,), daemon=True).start()

    def _banner(self, conn: socket.socket) -> None:
        """As an SSH server does: its banner first, then it reads what the client sends and hangs
        up (closing at once would race the client's request into a connection reset)."""
        try:
            conn.sendall(self.banner)
            conn.settimeout(5)
            conn.recv(65536)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()
