"""Closed pipes and Ctrl-C on every command that prints."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import LLMCHAT


def piped_to_head(args: str, tiny_toml, stdin: str = "") -> subprocess.CompletedProcess:
    cmd = f"printf %s '{stdin}' | '{LLMCHAT}' --models '{tiny_toml}' {args} | head -c 3; echo \" rc=${{PIPESTATUS[1]}}\""
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=300)
    # head -c may cut a character in half: decode leniently.
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                                       proc.stderr.decode("utf-8", "replace"))


@pytest.mark.parametrize("args", [
    "models",
    "models show tiny-llama",
    "tokenize -m tiny-llama --table 'a long line of text to tokenize, again and again and again'",
    "next -m tiny-llama 'Hello' -k 50",
    "ask -m tiny-llama 'Tell me' -n 200 -t 1 --seed 1",
    "ask -m tiny-llama 'Tell me' -n 50 -t 1 --seed 1 --json --logprobs 5",
])
def test_head_closing_the_pipe_is_quiet(tiny, args):
    proc = piped_to_head(args, tiny["toml"])
    assert proc.stdout.endswith(" rc=0\n"), proc.stdout
    assert proc.stderr == ""


def test_jsonl_batch_into_head(tiny):
    lines = "\\n".join(f"prompt {n}" for n in range(30))
    proc = piped_to_head("ask -m tiny-llama --jsonl -n 5", tiny["toml"], stdin=lines)
    assert proc.stdout.endswith(" rc=0\n") and proc.stderr == ""


def test_ctrl_c_during_the_gguf_conversion_leaves_no_half_cache(tmp_path):
    """Interrupt the first load of smollm2 (the conversion) in a fresh cache: exit 130, one line,
    and no cache folder that a later load would trust."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen([LLMCHAT, "ask", "hi"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    gguf_root = tmp_path / "cache" / "llmchat" / "gguf"
    deadline = time.monotonic() + 120
    while not (gguf_root.exists() and any(gguf_root.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the conversion has started writing
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "llmchat: interrupted" and "Traceback" not in err.decode()
    for folder in gguf_root.iterdir():
        # Either the tokenizer step completed (a whole folder) or nothing but hidden temp names remain.
        if not folder.name.startswith("."):
            assert (folder / "tokenizer.json").is_file() and (folder / "config.json").is_file()
        assert not list(folder.glob("*.tmp")), list(folder.iterdir())
    assert not any(p.name.startswith(".") for p in gguf_root.iterdir())  # temp folders were removed
