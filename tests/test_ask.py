"""`llmchat ask` and `llmchat next` through the installed command, on tiny models and smollm2."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from conftest import LLMCHAT
from llmchat.engine.loop import generate
from llmchat.engine.events import Finished
from llmchat.engine.sampling import SamplingParams


@pytest.fixture
def tiny_cli(cli, tiny):
    def run(*args, **kwargs):
        return cli("--models", str(tiny["toml"]), *args, **kwargs)
    return run


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.smollm2
def test_stdout_carries_only_the_answer(cli):
    proc = cli("ask", "What is the capital of France?", "-t", "0")
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout and proc.stdout.endswith("\n")
    assert proc.stderr == "" and "\x1b" not in proc.stdout


@pytest.mark.smollm2
def test_verbose_stats_go_to_stderr(cli):
    proc = cli("ask", "Say hi", "-t", "0", "-n", "5", "-v")
    assert proc.returncode == 0
    assert "prompt tokens" in proc.stderr and "tok/s" in proc.stderr and "stop:" in proc.stderr
    assert "prompt tokens" not in proc.stdout


def test_json_logprobs_match_the_engine(tiny_cli, loaded):
    proc = tiny_cli("ask", "-m", "tiny-llama", "Hello world", "--json", "--logprobs", "3", "--seed", "11",
                    "-t", "0.8", "-n", "10", "--dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["model"] == "tiny-llama" and record["settings"]["seed"] == 11
    assert record["settings"]["temperature"] == 0.8 and record["settings"]["max_tokens"] == 10
    model = loaded("tiny-llama")
    ids = model.tokenizer.apply_chat_template([{"role": "user", "content": "Hello world"}], add_generation_prompt=True,
                                              return_dict=False)
    assert record["prompt_tokens"] == len(ids)
    events = [e for e in generate(model, ids, SamplingParams(temperature=0.8, seed=11, max_new_tokens=10), alternatives=3)
              if not isinstance(e, Finished)]
    assert [t["id"] for t in record["tokens"]] == [e.id for e in events]
    for token, event in zip(record["tokens"], events):
        assert abs(token["logprob"] - event.logprob) < 1e-5
        assert [a["id"] for a in token["top"]] == [a.id for a in event.alternatives]
        assert bytes.fromhex(token["bytes"]) == event.bytes
    assert record["answer"] == "".join(e.text for e in events)
    assert record["stop_reason"] in ("eos", "length")


def test_jsonl_batch_with_a_bad_line(tiny_cli):
    lines = ['plain prompt', '{"prompt": "second", "max_tokens": 3, "seed": 2}', '{"prompt": 5}', '{oops', '',
             '"a json string"']
    proc = tiny_cli("ask", "-m", "tiny-llama", "--jsonl", "-n", "4", input="\n".join(lines) + "\n")
    assert proc.returncode == 1
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 6]
    assert "answer" in out[0] and out[1]["settings"]["max_tokens"] == 3 and out[1]["settings"]["seed"] == 2
    assert "wrong type" in out[2]["error"] and "invalid JSON" in out[3]["error"]
    assert "answer" in out[4]


def test_closing_the_pipe_early_is_quiet(tiny):
    cmd = f"'{LLMCHAT}' --models '{tiny['toml']}' ask -m tiny-llama 'Tell me' -n 200 -t 1 --seed 1 | head -c 5; " \
          "echo \" rc=${PIPESTATUS[0]}\""
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.stdout.endswith(" rc=0\n")
    assert proc.stderr == ""


def test_prompt_too_long_and_truncate(tiny_cli):
    long = "word " * 400  # the tiny models have a 256-token context
    proc = tiny_cli("ask", "-m", "tiny-llama", long, "-n", "10")
    assert proc.returncode == 5
    line = one_error_line(proc)
    assert "tokens after the chat template; the context is 256 (with max-tokens 10)" in line
    proc = tiny_cli("ask", "-m", "tiny-llama", long, "-n", "10", "--truncate", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["truncated_tokens"] > 0 and record["prompt_tokens"] + 10 <= 256
    assert "dropped its first" in proc.stderr


def test_raw_differs_from_the_chat_template(tiny_cli, loaded):
    templated = json.loads(tiny_cli("ask", "-m", "tiny-llama", "Hi there", "--json", "-n", "2").stdout)
    raw = json.loads(tiny_cli("ask", "-m", "tiny-llama", "Hi there", "--json", "-n", "2", "--raw").stdout)
    tokenizer = loaded("tiny-llama").tokenizer
    assert raw["raw"] and not templated["raw"]
    assert raw["prompt_tokens"] == len(tokenizer.encode("Hi there"))
    assert templated["prompt_tokens"] > raw["prompt_tokens"]


def test_stdin_then_argument_then_files(tiny_cli, loaded, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("from a file\n")
    proc = tiny_cli("ask", "-m", "tiny-llama", "summarise", "-f", str(notes), "--raw", "--json", "-n", "1",
                    input="from stdin\n")
    assert proc.returncode == 0, proc.stderr
    expected = loaded("tiny-llama").tokenizer.encode("from stdin\n\nsummarise\n\nfrom a file")
    assert json.loads(proc.stdout)["prompt_tokens"] == len(expected)


@pytest.mark.parametrize("args, stdin, code, fragment", [
    (["ask"], "", 2, "no prompt"),
    (["ask"], "   \n", 2, "no prompt"),
    (["ask"], b"abc\xff\xfe", 2, "byte 0xff at offset 3"),
    (["ask", "hi", "-t", "-1"], None, 2, "temperature"),
    (["ask", "hi", "--top-p", "1.5"], None, 2, "top-p"),
    (["ask", "hi", "-f", "/no/such/file"], None, 2, "cannot read /no/such/file"),
    (["ask", "hi", "--view", "sideways"], None, 2, "--view"),
    (["ask", "hi", "-m", "tiny-lama"], None, 3, "did you mean tiny-llama"),
    (["next", "hi", "--top", "0"], None, 2, "--top"),
])
def test_bad_input(tiny_cli, args, stdin, code, fragment):
    proc = tiny_cli(*args, "-m", "tiny-llama", input=stdin) if "-m" not in args else tiny_cli(*args, input=stdin)
    assert proc.returncode == code, proc.stderr
    assert fragment in one_error_line(proc)
    assert proc.stdout == ""


def test_input_errors_replace(tiny_cli):
    proc = tiny_cli("ask", "-m", "tiny-llama", "--input-errors", "replace", "-n", "2", input=b"abc\xff")
    assert proc.returncode == 0, proc.stderr


def test_thinking_goes_to_stderr_in_a_pipe(tiny_cli):
    # The R1 template opens <think>, and the random model never closes it: all it writes is thinking.
    proc = tiny_cli("ask", "-m", "tiny-r1", "Hello", "-n", "8", "-t", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "\n" and proc.stderr.startswith("thinking…")
    hidden = tiny_cli("ask", "-m", "tiny-r1", "Hello", "-n", "8", "-t", "0", "--hide-thinking")
    assert hidden.stdout == "\n" and hidden.stderr == ""
    record = json.loads(tiny_cli("ask", "-m", "tiny-r1", "Hello", "-n", "8", "-t", "0", "--json").stdout)
    assert record["answer"] == "" and record["thinking"]


@pytest.mark.smollm2
def test_ctrl_c_exits_130_with_one_line():
    proc = subprocess.Popen([LLMCHAT, "ask", "Write a very long story about a dragon.", "-n", "4000", "-t", "1",
                             "--seed", "3"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(1)  # generation has started
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines() == ["llmchat: interrupted"]


@pytest.mark.smollm2
def test_next_puts_paris_in_the_top_5(cli):
    proc = cli("next", "The capital of France is", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert " Paris" in [row["text"] for row in data["top"][:5]]
    assert len(data["top"]) == 10 and 0 < data["entropy_nats"]
    assert abs(data["top"][-1]["cumulative"] - sum(r["prob"] for r in data["top"])) < 1e-6
    table = cli("next", "The capital of France is", "-k", "3")
    assert "␣Paris" in table.stdout and "entropy" in table.stdout


def test_next_after_and_chat(tiny_cli, loaded):
    plain = json.loads(tiny_cli("next", "-m", "tiny-llama", "Hello", "--json").stdout)
    after = json.loads(tiny_cli("next", "-m", "tiny-llama", "Hello", "--after", " world", "--json").stdout)
    chat = json.loads(tiny_cli("next", "-m", "tiny-llama", "Hello", "--chat", "--json").stdout)
    tokenizer = loaded("tiny-llama").tokenizer
    assert after["prompt_tokens"] == plain["prompt_tokens"] + len(tokenizer.encode(" world", add_special_tokens=False))
    assert chat["prompt_tokens"] > plain["prompt_tokens"]
    assert plain["top"] != after["top"]
