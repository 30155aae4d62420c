"""HTTP to a remote engine, with every fault turned into one line (errors.RemoteError, exit 7).

httpx does the HTTP (explicit connect, read, write and pool timeouts; TLS verified by default).
This module adds what a terminal client needs on top:

- connection refused, DNS failure, TLS errors, a non-HTTP listener, a stalled stream (no byte
  within `read` seconds) and malformed JSON each get their own message and fix;
- 401/403 name the environment variable the key came from; 404 lists what the server serves
  (the caller's `on_404`); a context overflow reports the counts (ContextOverflow, exit 5);
- 429 and 503 are retried with exponential backoff a bounded number of times (`RETRIES`),
  each retry said in one line through `notice`;
- the API key is sent only as a header and never appears in an error: every message passes
  through `redact`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
import time
from typing import Any, Callable, Iterator

import httpx

from ..errors import ContextOverflow, LlmchatError, ModelNotFound, RemoteError

RETRIES = 3  # for 429/503: waits of BACKOFF, 2×BACKOFF, 4×BACKOFF seconds
BACKOFF = 0.5
CONNECT_SECONDS = 5.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class Http:
    """One engine's base URL, key and timeouts."""

    def __init__(self, base_url: str, *, api_key: str | None = None, key_env: str | None = None,
                 read_timeout: float = 120.0, notice: Callable[[str], None] = lambda line: None):
        self.base_url = base_url.rstrip("/")
        self.key_env = key_env
        self._key = api_key
        self.notice = notice
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(connect=CONNECT_SECONDS, read=read_timeout, write=30.0, pool=CONNECT_SECONDS)
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout, verify=_verify(),
                                   follow_redirects=False, trust_env=False)
        self.host = httpx.URL(self.base_url).host

    def redact(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "***")
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ requests
    def get(self, path: str, *, ok_404: bool = False) -> Any:
        return self._json(self._send("GET", path, None, ok_404=ok_404), path)

    def post(self, path: str, body: dict, *, ok_404: bool = False) -> Any:
        return self._json(self._send("POST", path, body, ok_404=ok_404), path)

    def _send(self, method: str, path: str, body: dict | None, *, ok_404: bool = False) -> httpx.Response | None:
        for attempt in range(RETRIES + 1):
            try:
                response = self._fresh_on_stale(lambda: self.client.request(method, path, json=body))
            except httpx.HTTPError as exc:
                raise self.transport_error(exc, path) from None
            if response.status_code in (429, 503) and attempt < RETRIES:
                wait = BACKOFF * 2 ** attempt
                self.notice(f"{self.base_url} answered {response.status_code} "
                            f"({'too many requests' if response.status_code == 429 else 'unavailable'}); "
                            f"retry {attempt + 1} of {RETRIES} in {wait:.1f} s")
                time.sleep(wait)
                continue
            if response.status_code == 404 and ok_404:
                return None
            if response.status_code >= 400:
                raise self.status_error(response.status_code, response.text, path)
            return response
        raise AssertionError("unreachable")

    @staticmethod
    def _fresh_on_stale(send):
        """Send; when the server hung up before answering, send once more. A kept-alive connection
        the server closed while idle (llama-server drops them after 5 s, e.g. while a long answer
        held its only slot) fails this way; the second try goes on a new connection, and a server
        that truly does not answer fails it again."""
        try:
            return send()
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return send()

    def _json(self, response: httpx.Response | None, path: str) -> Any:
        if response is None:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RemoteError(f"{self.base_url}{path} answered with malformed JSON "
                              f"({self.redact(response.text[:60])!r}…)",
                              "is the URL that of the engine's API? check `engine =` and the port") from None

    def stream(self, path: str, body: dict) -> "Stream":
        """POST and read the answer line by line on a reader thread (so that Ctrl-C and the read
        timeout are checked every `poll` seconds, whatever the server does)."""
        for attempt in range(RETRIES + 1):
            try:
                request = self.client.build_request("POST", path, json=body)
                response = self._fresh_on_stale(lambda: self.client.send(request, stream=True))
            except httpx.HTTPError as exc:
                raise self.transport_error(exc, path) from None
            if response.status_code in (429, 503) and attempt < RETRIES:
                response.close()
                wait = BACKOFF * 2 ** attempt
                self.notice(f"{self.base_url} answered {response.status_code}; retry {attempt + 1} of {RETRIES} "
                            f"in {wait:.1f} s")
                time.sleep(wait)
                continue
            if response.status_code >= 400:
                try:
                    text = response.read().decode("utf-8", "replace")
                except httpx.HTTPError:
                    text = ""
                response.close()
                raise self.status_error(response.status_code, text, path)
            return Stream(self, response, path)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ faults
    def transport_error(self, exc: Exception, path: str) -> LlmchatError:
        url = self.base_url
        cause = exc.__cause__ or exc.__context__
        text = self.redact(f"{exc} {cause or ''}")
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(f"cannot connect to {url}: no answer within {CONNECT_SECONDS:.0f} s",
                               "check the host and port, and that the server is up")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return RemoteError(f"{url}{path} sent nothing for {self.timeout.read:.0f} s (stalled)",
                               "is the server overloaded or the port not an inference server? raise `timeout =` "
                               "in models.toml for slow prompts")
        if isinstance(exc, httpx.ConnectError):
            if _is_tls(exc):
                return RemoteError(f"TLS error talking to {url}: {_short(text)}",
                                   "fix the server's certificate (or set SSL_CERT_FILE to your CA); "
                                   "llmchat always verifies TLS")
            if re.search(r"Name or service not known|nodename nor servname|getaddrinfo|Temporary failure in name "
                         r"resolution|No address associated", text):
                return RemoteError(f"cannot resolve the host {self.host!r} of {url} (DNS failure)",
                                   "check the spelling of the URL, or your network")
            if "refused" in text.lower():
                return RemoteError(f"connection refused by {url}",
                                   "start the server (see README, 'Remote engines'), or check the port")
            return RemoteError(f"cannot connect to {url}: {_short(text)}", "check the URL and that the server is up")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.LocalProtocolError)):
            return RemoteError(f"{url} does not speak HTTP ({_short(text)})",
                               "is this port an inference server? check the URL")
        if isinstance(exc, httpx.ReadError):
            return RemoteError(f"{url} closed the connection ({_short(text)})", "is the server still running?")
        return RemoteError(f"request to {url}{path} failed: {type(exc).__name__}: {_short(text)}",
                           "check the URL and the server's log")

    def status_error(self, status: int, text: str, path: str) -> LlmchatError:
        message = _error_message(text)
        url = self.base_url
        if status in (401, 403):
            where = (f"the key in ${self.key_env}" if self.key_env and self._key else
                     f"${self.key_env}, which is not set" if self.key_env else "no API key (none configured)")
            fix = (f"export {self.key_env}=<key> with a valid key" if self.key_env else
                   "set api_key_env = \"NAME\" in the models.toml entry and export NAME=<key>")
            return RemoteError(f"{url} refused the request ({status} {'unauthorized' if status == 401 else 'forbidden'}) "
                               f"with {where}", fix)
        if status == 404:
            return ModelNotFound(f"{url}{path} answered 404 not found{': ' + self.redact(message) if message else ''}",
                                 "check `engine =` and the served `model =` name (`llmchat models show` lists them)")
        counts = _context_counts(text)
        if status == 413 or (status == 400 and (counts or re.search(r"context|too long|exceed", message, re.I))):
            detail = (f" ({counts[0]} prompt tokens, the server's context is {counts[1]})" if counts else
                      f" ({_short(self.redact(message))})" if message else "")
            return ContextOverflow(f"the prompt does not fit the server's context{detail}",
                                   "shorten it, lower max_tokens, or use --truncate")
        if status in (429, 503):
            return RemoteError(f"{url} is still busy ({status}) after {RETRIES} retries", "wait and try again")
        return RemoteError(f"{url}{path} answered {status}{': ' + _short(self.redact(message)) if message else ''}",
                           "check the request settings and the server's log")

    def plain_http_warning(self) -> str | None:
        """A warning when a key would travel unencrypted to a host that is not this machine."""
        if self._key and self.base_url.startswith("http://") and self.host not in LOCAL_HOSTS:
            return (f"warning: the API key goes to {self.host} over plain http (unencrypted); "
                    "use an https:// URL")
        return None


class Stream:
    """The lines of a streamed answer; `lines(should_stop)` yields each non-empty line, or stops
    (closing the connection, which makes the engine stop generating) when `should_stop()`."""

    POLL = 0.05

    def __init__(self, http: Http, response: httpx.Response, path: str):
        self.http, self.response, self.path = http, response, path
        network = response.extensions.get("network_stream")
        self._socket = network.get_extra_info("socket") if network is not None else None
        self._ended = False
        self._queue: list = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                self._put(("line", line))
            self._put(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
            self._put(("error", exc))

    def _put(self, item) -> None:
        with self._ready:
            self._queue.append(item)
            self._ready.notify()

    def lines(self, should_stop: Callable[[], bool]) -> Iterator[str]:
        try:
            while True:
                if should_stop():  # at every line: a consumer slower than the server never sees an empty queue
                    return
                with self._ready:
                    while not self._queue:
                        if should_stop():
                            return
                        self._ready.wait(self.POLL)
                    kind, value = self._queue.pop(0)
                if kind == "end":
                    self._ended = True
                    return
                if kind == "error":
                    if should_stop():
                        return
                    raise self.http.transport_error(value, self.path)
                if value.strip():
                    yield value
        finally:
            self.close()

    def close(self) -> None:
        """Hang up. A stream cut short is shut down first: closing alone leaves the connection
        open while the reader thread is blocked on it (seen in chat: llama-server went on
        generating into a socket nobody read), and an engine stops only when it sees the hang-up."""
        if not self._ended and self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.response.close()


def _verify() -> ssl.SSLContext | bool:
    """TLS is always verified: against $SSL_CERT_FILE when set (a private CA), else certifi's roots.
    (The client does not read proxy settings from the environment, so the CA file is read here.)"""
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        return True
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise RemoteError(f"SSL_CERT_FILE={path} is not a readable CA file ({exc})",
                          "point it at a PEM file of CA certificates, or unset it") from None


def _is_tls(exc: Exception) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return bool(re.search(r"SSL|TLS|CERTIFICATE|certificate", str(exc)))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "…"


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text.strip()[:200]
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message", "")))
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(data)[:200]


def _context_counts(text: str) -> tuple[int, int] | None:
    """(prompt tokens, context) from an engine's context error, when it says them."""
    try:
        data = json.loads(text)
        error = data.get("error", {}) if isinstance(data, dict) else {}
        if isinstance(error, dict) and "n_prompt_tokens" in error and "n_ctx" in error:  # llama.cpp
            return int(error["n_prompt_tokens"]), int(error["n_ctx"])
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
        pass
    # vLLM (tests/data/remote/vllm_errors.json): "This model's maximum context length is 8192 tokens.
    # However, your prompt contains 9000 input tokens, …" (0.34; 0.11: "your request has 9000 input
    # tokens"; older: "you requested 9000 tokens")
    m = re.search(r"maximum context length is (\d+) tokens.*?(?:requested|contains|has) (?:at least )?(\d+) (?:input )?tokens",
                  text, re.S)
    if m:
        return int(m.group(2)), int(m.group(1))
    # SGLang (tests/data/remote/sglang_errors.json): "The input (9000 tokens) is longer than the model's
    # context length (8192 tokens)." and "… maximum context length of 8192 tokens. You requested a total
    # of 8196 tokens: 8180 tokens from the input messages …"
    m = re.search(r"input \((\d+) tokens\) is longer than the model's context length \((\d+) tokens\)", text)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.search(r"maximum context length of (\d+) tokens.*?: (\d+) tokens from the input", text, re.S)
    if m:
        return int(m.group(2)), int(m.group(1))
    return None
