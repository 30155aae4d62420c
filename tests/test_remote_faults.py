"""Every fault a remote engine can produce, produced for real: against llama-server itself (a
wrong key, a wrong model name, a prompt over its context, the server killed mid-answer) or a real
socket that misbehaves (tests/peers/server.py). Each is one line on stderr with the fix, a
documented exit code, no traceback; the chat session survives; an API key never shows."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading

import pytest

from conftest import run_cli

pytestmark = pytest.mark.smollm2

SECRET = "sk-test-4f1d2c9e8b7a6"


def _entry(tmp_path, url: str, **extra) -> str:
    lines = [f'[models.x]', f'url = "{url}"', 'engine = "llama.cpp"', 'tokenizer = "smollm2"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path = tmp_path / "models.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _ask(models: str, *args: str, env=None, prompt: str = "Say hi."):
    return run_cli("--models", models, "ask", "-m", "x", prompt, "-t", "0", "-n", "8", *args, env=env, timeout=120)


def _one_line(proc, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("llmchat: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_connection_refused(tmp_path):
    from peers.server import free_port

    _one_line(_ask(_entry(tmp_path, f"http://127.0.0.1:{free_port()}")), 7, "connection refused", "start the server")


def test_dns_failure(tmp_path):
    _one_line(_ask(_entry(tmp_path, "http://no-such-host.invalid:8080")), 7, "DNS failure", "no-such-host.invalid")


@pytest.fixture
def tls_proxy(tmp_path, llama_server):
    """A TLS listener with a self-signed certificate in front of the real server."""
    from peers.server import Misbehaving

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    proxy = Misbehaving(llama_server.url, "forward", tls=context)
    yield proxy.url, cert
    proxy.close()


def test_tls_is_verified_and_a_bad_certificate_is_one_line(tmp_path, tls_proxy):
    url, cert = tls_proxy
    models = _entry(tmp_path, url)
    _one_line(_ask(models), 7, "TLS error", "CERTIFICATE_VERIFY_FAILED", "SSL_CERT_FILE")
    trusted = _ask(models, "--json", env={"SSL_CERT_FILE": str(cert)})  # the fix the message names
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["generated_tokens"] == 8


@pytest.fixture(scope="module")
def keyed_server(session_dir):
    from llmchat.config.registry import load_registry
    from llmchat.model.files import gguf_file
    from peers.server import LlamaServer

    server = LlamaServer(gguf_file(load_registry().get("smollm2")), "--api-key", SECRET,
                         log=session_dir / "llama-server-keyed.log")
    yield server
    server.stop()


def test_401_names_the_env_var_and_no_key_ever_shows(tmp_path, keyed_server):
    models = _entry(tmp_path, keyed_server.url, api_key_env="TEST_LLM_KEY")
    unset = _ask(models, env={"TEST_LLM_KEY": ""})
    _one_line(unset, 7, "401", "$TEST_LLM_KEY, which is not set", "export TEST_LLM_KEY=")
    wrong = _ask(models, env={"TEST_LLM_KEY": "sk-wrong-999"})
    _one_line(wrong, 7, "401", "the key in $TEST_LLM_KEY")
    assert "sk-wrong-999" not in wrong.stderr + wrong.stdout
    right = _ask(models, "--json", "--logprobs", "2", "-v", env={"TEST_LLM_KEY": SECRET})
    assert right.returncode == 0, right.stderr
    shown = run_cli("--models", models, "models", "show", "x", "--json", env={"TEST_LLM_KEY": SECRET})
    listed = run_cli("--models", models, "models", "--json", env={"TEST_LLM_KEY": SECRET})
    for proc in (right, shown, listed):
        assert SECRET not in proc.stdout + proc.stderr
    assert json.loads(shown.stdout)["api_key_env"] == "TEST_LLM_KEY (set)"


def test_a_key_over_plain_http_to_another_host_draws_a_warning():
    from llmchat.remote.http import Http

    assert "plain http" in Http("http://10.1.2.3:8000", api_key="k").plain_http_warning()
    assert Http("http://127.0.0.1:8000", api_key="k").plain_http_warning() is None
    assert Http("https://10.1.2.3:8000", api_key="k").plain_http_warning() is None
    assert Http("http://10.1.2.3:8000").plain_http_warning() is None


def test_wrong_model_name_lists_what_the_server_serves(tmp_path, llama_server):
    line = _one_line(_ask(_entry(tmp_path, llama_server.url, model="llama-70b")), 3, "does not serve 'llama-70b'",
                     "it serves: ", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "set `model =`" in line


def test_context_overflow_reports_the_servers_counts(tmp_path, llama_server):
    long_prompt = "word " * 2200
    _one_line(_ask(_entry(tmp_path, llama_server.url, context=100000), prompt=long_prompt), 5,
              "does not fit the server's context", "prompt tokens, the server's context is 2048", "--truncate")
    # with the server's own context known, the client refuses before sending
    _one_line(_ask(_entry(tmp_path, llama_server.url), prompt=long_prompt), 5, "2048")


@pytest.fixture
def misbehaving(llama_server):
    from peers.server import Misbehaving

    made = []

    def make(mode):
        made.append(Misbehaving(llama_server.url, mode))
        return made[-1]

    yield make
    for m in made:
        m.close()


def test_503_is_retried_with_backoff_and_said(tmp_path, misbehaving):
    proxy = misbehaving("503x2")
    proc = _ask(_entry(tmp_path, proxy.url), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("answered 503") == 2 and "retry 1 of 3" in proc.stderr and "retry 2 of 3" in proc.stderr
    assert proxy.hits == 3


def test_429_gives_up_after_the_bounded_retries(tmp_path, misbehaving):
    proxy = misbehaving("429")
    _one_line(_ask(_entry(tmp_path, proxy.url)), 7, "still busy (429) after 3 retries")
    assert proxy.hits == 4


def test_malformed_json(tmp_path, misbehaving):
    _one_line(_ask(_entry(tmp_path, misbehaving("malformed").url)), 7, "not JSON", "engine =")


def test_ids_outside_the_vocabulary(tmp_path, misbehaving, remote_source):
    _one_line(_ask(_entry(tmp_path, misbehaving("bad-id").url)), 7, "token id 99999999, outside its vocabulary")
    from llmchat.engine.sampling import SamplingParams
    from llmchat.errors import UsageError

    with pytest.raises(UsageError, match="outside the server's vocabulary"):  # and the client never sends one
        list(remote_source.generate([1, 49152], SamplingParams(temperature=0.0)))


def test_a_stalled_stream_times_out_and_keeps_what_came(tmp_path, misbehaving):
    proc = _ask(_entry(tmp_path, misbehaving("stall").url, timeout=1))
    _one_line(proc, 7, "sent nothing for 1 s (stalled)")
    assert proc.stdout.startswith("The")  # the token that did arrive was shown


def test_a_port_that_accepts_and_never_answers(tmp_path):
    from peers.server import RawListener

    silent = RawListener(None)
    try:
        _one_line(_ask(_entry(tmp_path, silent.url, timeout=1)), 7, "sent nothing for 1 s")
    finally:
        silent.close()


def test_a_listener_that_is_not_http(tmp_path):
    from peers.server import RawListener

    ssh = RawListener(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    try:
        _one_line(_ask(_entry(tmp_path, ssh.url)), 7, "does not speak HTTP")
    finally:
        ssh.close()


def test_the_server_killed_mid_answer_keeps_the_partial_answer_marked(session_dir):
    from llmchat.chat.session import Session
    from llmchat.cli.common import open_source
    from llmchat.config.registry import load_registry
    from llmchat.engine.sampling import SamplingParams
    from llmchat.errors import RemoteError
    from llmchat.model.files import gguf_file
    from peers.server import LlamaServer

    server = LlamaServer(gguf_file(load_registry().get("smollm2")), log=session_dir / "llama-server-killed.log")
    try:
        path = session_dir / "killed.toml"
        path.write_text(f'[models.x]\nurl = "{server.url}"\nengine = "llama.cpp"\ntokenizer = "smollm2"\n')
        registry = load_registry(path)
        session = Session(source=open_source(registry.get("x"), registry),
                          params=SamplingParams(temperature=0.8, max_new_tokens=1500, seed=1))
        stream = session.ask("Write a long story about a dragon.")
        seen = [next(stream) for _ in range(10)]
        threading.Thread(target=server.kill).start()
        with pytest.raises(RemoteError, match="closed|partial"):
            for _ in stream:
                pass
        exchange = session.exchanges[-1]
        assert len(exchange.events) >= len(seen) and exchange.interrupted
        assert exchange.answer.startswith("".join(e.text for e in seen))
    finally:
        server.stop()


def test_a_kept_alive_connection_the_server_dropped_is_retried_on_a_fresh_one():
    """llama-server closes a kept-alive connection after 5 s idle (cpp-httplib's
    CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND), e.g. while a long answer holds its only slot; a request
    on it then fails with "disconnected without sending a response". This server answers the
    first request of every connection and hangs up on the second, so every reuse meets it."""
    import socket

    from llmchat.remote.http import Http

    body = b'{"ok": true}'
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
             b"Connection: keep-alive\r\n\r\n%s" % (len(body), body))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    connections = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    def one(conn):
        try:
            conn.recv(65536)
            conn.sendall(reply)
            conn.recv(65536)  # the second request on this connection: hang up without answering
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    http = Http(f"http://127.0.0.1:{listener.getsockname()[1]}", read_timeout=5)
    try:
        assert [http.get("/props") for _ in range(4)] == [{"ok": True}] * 4
        assert len(connections) >= 4  # each reuse failed and went on a new connection
    finally:
        http.close()
        listener.close()
