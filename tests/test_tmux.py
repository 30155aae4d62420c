"""A real terminal: `llmchat chat` on smollm2 inside tmux, driven with send-keys / capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import LLMCHAT

pytestmark = [pytest.mark.smollm2, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    def __init__(self, command: str, width: int = 120, height: int = 40):
        self.name = f"llmchat-test-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, TERM="xterm-256color")
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        f"{command}; echo EXIT=$?; sleep 60"], check=True, env=self.env)

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True, env=self.env)

    def screen(self, escapes: bool = False, history: bool = True) -> str:
        """The pane as text; with `history`, the lines scrolled off the top too (counts stay true)."""
        args = ["tmux", "capture-pane", "-p", "-t", self.name] + (["-e"] if escapes else []) + \
            (["-S", "-"] if history else [])
        return subprocess.run(args, capture_output=True, text=True, check=True, env=self.env).stdout

    def wait_for(self, predicate, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.3)
        tail = "\n".join(self.screen().splitlines()[-60:])
        raise AssertionError(f"timed out; the last lines of the pane were:\n{tail}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True, env=self.env)


def test_chat_in_a_real_terminal(smollm2):  # smollm2: the converted cache exists before the chat starts
    tmux = Tmux(f"'{LLMCHAT}' chat --no-history -t 0")
    try:
        tmux.wait_for(lambda s: "Ctrl-D to leave" in s and "context" in s)
        tmux.keys("What is the capital of France?", "Enter")
        screen = tmux.wait_for(lambda s: s.count("stop:") == 1)
        assert "Paris" in screen
        tmux.keys("/view probs", "Enter")
        tmux.wait_for(lambda s: "view: probs" in s)
        tmux.keys("/retry", "Enter")
        tmux.wait_for(lambda s: s.count("stop:") == 2)
        coloured = tmux.screen(escapes=True)
        answer_lines = [line for line in coloured.splitlines() if "Paris" in line]
        assert any("48;2;" in line or "48;5;" in line for line in answer_lines[1:]), coloured  # backgrounds by probability
        assert not any("48;2;" in line for line in answer_lines[:1])  # the text view had none
        tmux.keys("/exit", "Enter")
        tmux.wait_for(lambda s: "EXIT=0" in s, timeout=30)
    finally:
        tmux.close()


def test_chat_over_a_real_llama_server(remote_models, llama_server):
    """The same chat over llama-server: answer, /view probs, /inspect, /branch, Ctrl-C keeps the session."""
    tmux = Tmux(f"'{LLMCHAT}' --models '{remote_models}' chat -m remote --no-history -t 0 -n 60")
    try:
        tmux.wait_for(lambda s: "Ctrl-D to leave" in s)
        tmux.keys("Name a colour.", "Enter")
        tmux.wait_for(lambda s: s.count("stop:") == 1)
        tmux.keys("/view probs", "Enter")
        tmux.wait_for(lambda s: "view: probs" in s)
        tmux.keys("/retry", "Enter")
        tmux.wait_for(lambda s: s.count("stop:") == 2)
        coloured = tmux.screen(escapes=True)
        assert "48;2;" in coloured or "48;5;" in coloured  # backgrounds by the server's probabilities
        tmux.keys("/inspect 0", "Enter")
        screen = tmux.wait_for(lambda s: "◂ chosen" in s)
        assert "entropy - (the engine sends only the top K)" in screen.replace("\n", " ")
        tmux.keys("/branch 0 1", "Enter")
        tmux.wait_for(lambda s: s.count("stop:") == 3)
        tmux.keys("/set max_tokens 1000", "Enter")
        tmux.keys("Write a very long story about a lighthouse keeper.", "Enter")
        time.sleep(1.5)
        tmux.keys("C-c")
        screen = tmux.wait_for(lambda s: "interrupted" in s)
        import httpx

        deadline = time.monotonic() + 10  # the chat closed the connection: the server's slot goes idle
        while any(slot.get("is_processing") for slot in httpx.get(llama_server.url + "/slots", timeout=5).json()):
            assert time.monotonic() < deadline, "llama-server still generating 10 s after Ctrl-C in chat"
            time.sleep(0.2)
        tmux.keys("Say yes.", "Enter")  # the session goes on after Ctrl-C
        tmux.wait_for(lambda s: "» Say yes." in s and "stop:" in s.split("» Say yes.")[-1])
        tmux.keys("/exit", "Enter")
        tmux.wait_for(lambda s: "EXIT=0" in s, timeout=30)
    finally:
        tmux.close()
