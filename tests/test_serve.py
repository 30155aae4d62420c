"""`llmchat serve` and `ask` through it: real tiny checkpoints, the real CLI, real Unix sockets.

Every server runs with its own XDG_RUNTIME_DIR (a short /tmp dir: socket paths are limited to
107 bytes), so no other test's `ask` ever finds one; a finalizer always kills it.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import LLMCHAT


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


class Servers:
    """Starts `llmchat serve` processes and kills whatever is left of them at the end."""

    def __init__(self, toml: Path):
        self.toml, self.procs, self.dirs = toml, [], []

    def runtime(self) -> dict:
        """A fresh XDG_RUNTIME_DIR as an env overlay."""
        path = tempfile.mkdtemp(prefix="lcs", dir="/tmp")
        self.dirs.append(path)
        return {"XDG_RUNTIME_DIR": path}

    def start(self, env: dict, *args: str) -> tuple[subprocess.Popen, Path]:
        proc = subprocess.Popen([LLMCHAT, "--models", str(self.toml), "serve", *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, **env))
        self.procs.append(proc)
        line = _read_line(proc, timeout=120)
        assert line.startswith("llmchat: serving ") and " on " in line, line
        return proc, Path(line.rstrip("\n").split(" on ", 1)[1])

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            proc.stderr.close()
        for path in self.dirs:
            for sock in Path(path).glob("llmchat/*.sock"):  # a keep-alive server started by `ask`
                _stop_by_ping(sock)
            shutil.rmtree(path, ignore_errors=True)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline, data = time.monotonic() + timeout, b""
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        if selector.select(deadline - time.monotonic()):
            chunk = os.read(proc.stderr.fileno(), 1)
            if not chunk:
                break
            data += chunk
    return data.decode()


def _raw_request(path: Path, record: dict, timeout: float = 30) -> list[dict]:
    """Speak the protocol directly: one request, every reply line until the server hangs up."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(json.dumps(record).encode() + b"\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def _stop_by_ping(sock: Path) -> None:
    try:
        pong = _raw_request(sock, {"version": 2, "op": "ping"}, timeout=5)[0]["pong"]
        os.kill(pong["pid"], signal.SIGKILL)
    except (OSError, KeyError, IndexError, ValueError):
        pass


@pytest.fixture(scope="module")
def servers(tiny):
    box = Servers(tiny["toml"])
    yield box
    box.close()


@pytest.fixture(scope="module")
def llama_server(servers):
    """One tiny-llama server shared by the tests that do not stop or kill it."""
    env = servers.runtime()
    proc, path = servers.start(env, "-m", "tiny-llama")
    return {"env": env, "proc": proc, "path": path}


@pytest.fixture
def ask(cli, tiny):
    def run(env: dict, *args, **kwargs):
        return cli("--models", str(tiny["toml"]), "ask", *args, env=env, **kwargs)
    return run


def _requests(path: Path) -> int:
    return _raw_request(path, {"version": 2, "op": "ping"})[0]["pong"]["requests"]


def test_answers_are_byte_identical_to_in_process(llama_server, ask):
    env, path = llama_server["env"], llama_server["path"]
    args = ("-m", "tiny-llama", "--seed", "1", "-t", "1", "-n", "40", "hi")
    local = ask(env, *args, "--no-server")
    before = _requests(path)
    first = ask(env, *args)
    second = ask(env, *args, "-v")  # the same prompt again: the server reuses its cached prefix
    assert _requests(path) == before + 2
    assert local.returncode == first.returncode == second.returncode == 0, first.stderr
    assert first.stdout.encode() == local.stdout.encode() == second.stdout.encode()
    assert first.stderr == local.stderr == ""
    assert " reused · " in second.stderr  # the stats line comes from the server's Finished
    json_args = ("-m", "tiny-llama", "--seed", "5", "-t", "0.9", "-n", "12", "Hello world", "--json", "--logprobs", "3")
    remote_rec, local_rec = (json.loads(ask(env, *json_args, *extra).stdout) for extra in ((), ("--no-server",)))
    for key in ("model", "weights", "backend", "settings", "raw", "prompt_tokens", "answer", "thinking",
                "stop_reason", "tokens"):
        assert remote_rec[key] == local_rec[key], key


def test_socket_and_directory_are_private(llama_server):
    path = llama_server["path"]
    assert stat.S_ISSOCK(path.lstat().st_mode) and stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.lstat().st_mode) == 0o700
    assert path.parent == Path(llama_server["env"]["XDG_RUNTIME_DIR"]) / "llmchat"


@pytest.mark.parametrize("args, code", [
    (("word " * 400, "-n", "10"), 5),  # the tiny models have a 256-token context
    (("hi", "--view", "sideways"), 2),
    (("hi", "-n", "256", "--raw"), 5),
])
def test_errors_match_in_process(llama_server, ask, args, code):
    env = llama_server["env"]
    remote, local = ask(env, "-m", "tiny-llama", *args), ask(env, "-m", "tiny-llama", *args, "--no-server")
    assert remote.returncode == local.returncode == code
    assert one_error_line(remote) == one_error_line(local)
    assert remote.stdout == local.stdout == ""


def test_truncate_note_and_json_through_the_server(llama_server, ask):
    proc = ask(llama_server["env"], "-m", "tiny-llama", "word " * 400, "-n", "10", "--truncate", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["truncated_tokens"] > 0 and record["prompt_tokens"] + 10 <= 256
    assert "dropped its first" in proc.stderr


def test_a_second_server_for_the_same_model_refuses(llama_server, servers, cli, tiny):
    proc = cli("--models", str(tiny["toml"]), "serve", "-m", "tiny-llama", env=llama_server["env"])
    assert proc.returncode == 1
    assert f"a server for tiny-llama is already running at {llama_server['path']}" in one_error_line(proc)
    assert llama_server["proc"].poll() is None and llama_server["path"].is_socket()


def test_twenty_sequential_asks(llama_server, ask):
    env = llama_server["env"]
    remote = [json.loads(ask(env, "-m", "tiny-llama", "hi", "-n", "8", "-t", "1", "--seed", str(seed), "--json").stdout)
              for seed in range(20)]
    batch = ask(env, "-m", "tiny-llama", "--jsonl", "-n", "8", "-t", "1",
                input="".join(json.dumps({"prompt": "hi", "seed": seed}) + "\n" for seed in range(20)))
    assert batch.returncode == 0, batch.stderr
    local = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [r["answer"] for r in remote] == [r["answer"] for r in local]
    assert [r["settings"]["seed"] for r in remote] == list(range(20))


def test_a_client_that_hangs_up_does_not_stop_the_server(llama_server, ask):
    path = llama_server["path"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        request = {"version": 2, "op": "ask", "prompt": "Tell me", "system": None, "raw": False, "truncate": False,
                   "logprobs": 0, "params": {"temperature": 1.0, "seed": 3, "max_tokens": 200}}
        conn.sendall(json.dumps(request).encode() + b"\n")
        assert b'"prompt"' in conn.recv(65536)
    proc = ask(llama_server["env"], "-m", "tiny-llama", "hi", "-n", "5")
    assert proc.returncode == 0 and proc.stderr == ""
    bad = _raw_request(path, {"version": 2, "op": "ask", "prompt": "hi", "params": {"temperature": -1}})
    assert bad[0]["error"]["type"] == "UsageError" and bad[0]["error"]["exit_code"] == 2


def test_ctrl_c_while_waiting_for_a_busy_server(llama_server, tiny):
    env = dict(os.environ, **llama_server["env"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as blocker:
        blocker.connect(str(llama_server["path"]))  # the server now waits for this client's request
        proc = subprocess.Popen([LLMCHAT, "--models", str(tiny["toml"]), "ask", "-m", "tiny-llama", "hi", "-n", "5"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        time.sleep(1.5)  # long enough to have connected and queued (a slow start only makes the test weaker)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines() == ["llmchat: waiting for the server (busy with another request)",
                                                 "llmchat: interrupted"] and out == b""


def test_stale_socket_falls_back_in_process(servers, ask, tiny, monkeypatch):
    env = servers.runtime()
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])
    from llmchat.config.registry import load_registry
    from llmchat.serve.client import socket_for

    path = socket_for(load_registry(tiny["toml"]).get("tiny-llama"), dtype=None, quant=None, device=None)
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening, then closed: what a killed server leaves
    dead.close()
    proc = ask(env, "-m", "tiny-llama", "hi", "-n", "5", "--seed", "2")
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.endswith("\n")
    assert not path.exists()


def test_killed_server_then_restart_then_stop(servers, ask, cli, tiny):
    env = servers.runtime()
    proc, path = servers.start(env, "-m", "tiny-llama")
    proc.kill()
    proc.wait(timeout=30)
    assert path.is_socket()  # SIGKILL leaves the socket behind
    fallback = ask(env, "-m", "tiny-llama", "hi", "-n", "5", "--seed", "4")
    assert fallback.returncode == 0 and fallback.stderr == "" and not path.exists()
    proc, again = servers.start(env, "-m", "tiny-llama")
    assert again == path
    stop = cli("--models", str(tiny["toml"]), "serve", "--stop", "-m", "tiny-llama", env=env)
    assert stop.returncode == 0, stop.stderr
    assert proc.wait(timeout=30) == 0 and not path.exists()
    assert "stopped serving tiny-llama (stop request)" in _read_line(proc, timeout=10)
    none = cli("--models", str(tiny["toml"]), "serve", "stop", "-m", "tiny-llama", env=env)
    assert none.returncode == 1 and "no server for tiny-llama is running" in one_error_line(none)


def test_reasoning_model_and_sigterm(servers, ask):
    env = servers.runtime()
    proc, path = servers.start(env, "-m", "tiny-r1")
    remote = ask(env, "-m", "tiny-r1", "Hello", "-n", "8", "-t", "0")
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == "\n" and remote.stderr.startswith("thinking…")  # the family travelled
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0 and not path.exists()


def test_keep_alive_starts_a_server_for_later_asks(servers, ask, cli, tiny):
    env = servers.runtime()
    first = ask(env, "-m", "tiny-llama", "hi", "-n", "5", "--seed", "7", "--keep-alive")
    assert first.returncode == 0 and first.stderr == ""
    sockets = Path(env["XDG_RUNTIME_DIR"]) / "llmchat"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = cli("serve", "--status", env=env)
        if status.stdout.startswith("live\ttiny-llama"):
            break
        time.sleep(0.5)
    assert status.stdout.startswith("live\ttiny-llama\tpid "), (status.stdout, status.stderr)
    path = next(sockets.glob("*.sock"))
    before = _requests(path)
    second = ask(env, "-m", "tiny-llama", "hi", "-n", "5", "--seed", "7", "--keep-alive")
    assert second.stdout == first.stdout and _requests(path) == before + 1
    assert cli("--models", str(tiny["toml"]), "serve", "--stop", "-m", "tiny-llama", env=env).returncode == 0


def test_an_ask_answered_by_the_server_never_imports_torch(llama_server, tiny):
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('TORCH-LOADED' if 'torch' in sys.modules else 'NO-TORCH'))\n"
            "from llmchat.cli import main\n"
            f"main(['--models', {str(tiny['toml'])!r}, 'ask', '-m', 'tiny-llama', 'hi', '-n', '3'])\n")
    proc = subprocess.run([str(Path(LLMCHAT).parent / "python"), "-c", code], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env=dict(os.environ, **llama_server["env"]))
    assert proc.returncode == 0 and proc.stderr == "NO-TORCH", proc.stderr


def test_remote_model_answers_every_model_source_call_like_the_local_one(llama_server, loaded, tiny, monkeypatch):
    """RemoteModel over `hello`: render, prepare, next, score and generate agree with LocalModel,
    on one connection."""
    from llmchat.config.registry import load_registry
    from llmchat.engine.events import Finished
    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel
    from llmchat.serve.client import find_server

    monkeypatch.setenv("XDG_RUNTIME_DIR", llama_server["env"]["XDG_RUNTIME_DIR"])
    remote = find_server(load_registry(tiny["toml"]).get("tiny-llama"), dtype=None, quant=None, device=None)
    local = LocalModel(loaded("tiny-llama"), reuse=False)
    assert remote is not None
    try:
        assert (remote.context_length, remote.family, remote.backend) == (local.context_length, local.family, local.backend)
        messages = [{"role": "user", "content": "Tell me a story"}]
        ids = remote.render(messages)
        assert ids == local.render(messages)
        kwargs = dict(system=None, raw=False, truncate=False, max_new_tokens=8)
        assert remote.prepare("Tell me a story", **kwargs) == local.prepare("Tell me a story", **kwargs)
        near, far = remote.next_distribution(ids, 5), local.next_distribution(ids, 5)
        assert [a.id for a in near.top] == [a.id for a in far.top]
        assert [a.prob for a in near.top] == pytest.approx([a.prob for a in far.top], abs=1e-5)
        scored, expected = remote.score(ids, 1, alternatives=2), local.score(ids, 1, alternatives=2)
        assert [t.rank for t in scored.tokens] == [t.rank for t in expected.tokens]
        assert [t.event.logprob for t in scored.tokens] == pytest.approx([t.event.logprob for t in expected.tokens], abs=1e-5)
        params = SamplingParams(temperature=0, max_new_tokens=6)
        got = list(remote.generate(ids, params, alternatives=2))
        want = list(local.generate(ids, params, alternatives=2))
        assert isinstance(got[-1], Finished) and got[-1].reason == want[-1].reason
        assert [(e.id, e.text, e.bytes) for e in got[:-1]] == [(e.id, e.text, e.bytes) for e in want[:-1]]
        assert remote.tokenizer.decode(ids) == local.tokenizer.decode(ids)  # the lazily loaded local tokenizer
    finally:
        remote.close()


def test_servers_are_told_apart_and_stopped_by_options(servers, cli, tiny):
    env = servers.runtime()
    toml = ("--models", str(tiny["toml"]))
    servers.start(env, "-m", "tiny-llama", "--quant", "int8")
    servers.start(env, "-m", "tiny-llama", "--dtype", "float32")
    lines = sorted(cli("serve", "--status", env=env).stdout.splitlines())
    assert len(lines) == 2 and sorted(line.split("\t")[4] for line in lines) == ["dtype=float32", "quant=int8"]
    several = cli(*toml, "serve", "--stop", "-m", "tiny-llama", env=env)
    assert several.returncode == 2 and "2 servers run tiny-llama" in one_error_line(several)
    assert "quant=int8" in several.stderr and "dtype=float32" in several.stderr
    one = cli(*toml, "serve", "--stop", "-m", "tiny-llama", "--quant", "int8", env=env)
    assert one.returncode == 0
    only = cli(*toml, "serve", "--stop", "-m", "tiny-llama", env=env)  # the model's only server left
    assert only.returncode == 0 and "stopped the server for tiny-llama" in only.stderr
    servers.start(env, "-m", "tiny-llama")
    servers.start(env, "-m", "tiny-llama", "--quant", "int8")
    stopped = cli("serve", "--stop", "--all", env=env)
    assert stopped.returncode == 0 and stopped.stderr.count("stopped the server for tiny-llama") == 2
    assert cli("serve", "--status", env=env).stdout == ""


def test_a_busy_server_is_announced_bounded_and_counted(llama_server, ask, tiny):
    env, path = llama_server["env"], llama_server["path"]
    args = ("-m", "tiny-llama", "hi", "-n", "3", "-t", "0")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as blocker:
        blocker.connect(str(path))  # the server now waits for this client's request (up to 30 s)
        loaded = ask(env, *args, "--server-wait", "2")
        failed = ask(env, *args, "--server-wait", "2", "--if-busy", "fail")
    lines = loaded.stderr.strip().splitlines()
    assert loaded.returncode == 0 and loaded.stdout.strip() and lines == [
        "llmchat: waiting for the server (busy with another request)",
        "llmchat: note: the server stayed busy for 2 s; loading tiny-llama in-process"]
    assert failed.returncode == 1 and failed.stderr.strip().splitlines()[-1].startswith(
        "llmchat: error: the server for tiny-llama was still busy after 2 s")
    blocker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    blocker.connect(str(path))
    proc = subprocess.Popen([LLMCHAT, "--models", str(tiny["toml"]), "ask", *args, "-v"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **env))
    time.sleep(2.5)
    blocker.close()  # the server is free: the ask waited about 2.5 s, and says so in its timings
    out, err = proc.communicate(timeout=60)
    ttft = float(err.split("TTFT ")[1].split("s")[0])
    assert proc.returncode == 0 and "waiting for the server" in err and ttft >= 2.0
