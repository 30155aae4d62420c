"""A remote engine for real: llmchat against llama.cpp's llama-server serving the default GGUF.

The server is built from llama-cpp-python's source package (tests/peers/llama_server.py) and
started on a free port by the `llama_server` fixture. Every number compared here is the server's
own (its /completion stream, read with plain httpx) or llmchat's own local engine on the same file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time

import httpx
import pytest

from conftest import LLMCHAT, run_cli

pytestmark = pytest.mark.smollm2

QUESTION = "What is the capital of France?"


def _server_completion(url: str, ids: list[int], n: int, *, k: int = 0, stream: bool = False) -> dict:
    """The server's own greedy answer to `ids`, asked directly (no llmchat code)."""
    body = {"prompt": ids, "n_predict": n, "temperature": 0, "top_k": 0, "top_p": 1, "min_p": 0,
            "n_probs": k, "return_tokens": True, "stream": stream, "cache_prompt": False}
    if not stream:
        return httpx.post(url + "/completion", json=body, timeout=60).json()
    tokens, probs = [], []
    with httpx.stream("POST", url + "/completion", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                tokens += data.get("tokens") or []
                probs += data.get("completion_probabilities") or []
    return {"tokens": tokens, "completion_probabilities": probs}


def _greedy(source, ids, n=24, k=3):
    from llmchat.engine.events import Finished
    from llmchat.engine.sampling import SamplingParams

    events = list(source.generate(ids, SamplingParams(temperature=0.0, max_new_tokens=n), alternatives=k))
    assert isinstance(events[-1], Finished)
    return events[:-1], events[-1]


def test_greedy_answer_equals_the_servers_own_and_each_logprob_is_its_number(remote_source, llama_server):
    ids = remote_source.render([{"role": "user", "content": QUESTION}])
    events, finished = _greedy(remote_source, ids, n=24, k=3)
    own = _server_completion(llama_server.url, ids, 24, k=3, stream=True)
    assert [e.id for e in events] == own["tokens"]
    for event, row in zip(events, own["completion_probabilities"]):
        assert event.logprob == pytest.approx(row["logprob"], abs=1e-9)
        assert [a.id for a in event.alternatives] == [a["id"] for a in row["top_logprobs"]]
        assert event.bytes == bytes(row["bytes"]) or event.is_special
    assert "".join(e.text for e in events) == remote_source.tokenizer.decode([e.id for e in events],
                                                                              skip_special_tokens=True)
    assert finished.prompt_tokens == len(ids) and finished.generated_tokens == len(events)


def test_top_k_is_sorted_and_at_most_zero(remote_source):
    ids = remote_source.render([{"role": "user", "content": "Name three colours."}])
    events, _ = _greedy(remote_source, ids, n=16, k=8)
    for event in events:
        logprobs = [math.log(a.prob) for a in event.alternatives]
        assert len(logprobs) == 8
        assert logprobs == sorted(logprobs, reverse=True)
        assert all(lp <= 0 for lp in logprobs)
        assert event.alternatives[0].id == event.id  # greedy: the chosen token is the most probable
        assert event.sample_prob == 1.0 and math.isnan(event.entropy)


def test_streaming_and_non_streaming_give_the_same_ids(remote_source, llama_server):
    ids = remote_source.render([{"role": "user", "content": "Count to five."}])
    events, _ = _greedy(remote_source, ids, n=20, k=0)
    whole = _server_completion(llama_server.url, ids, 20)
    assert [e.id for e in events] == whole["tokens"]


def test_branch_is_deterministic_at_temperature_zero(remote_source):
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams

    session = Session(source=remote_source, params=SamplingParams(temperature=0.0, max_new_tokens=20))
    list(session.ask(QUESTION))
    first = session.exchanges[-1]
    alt = first.events[1].alternatives[1]
    texts = []
    for _ in range(2):
        list(session.branch(1, "1"))
        exchange = session.exchanges[-1]
        assert exchange.events[0].id == first.events[0].id and exchange.events[1].id == alt.id
        texts.append(exchange.answer)
    assert texts[0] == texts[1] and texts[0] != first.answer


@pytest.mark.parametrize("text", ["Hello 🦙 world", "<|im_start|>user\nhi<|im_end|>", "  two  spaces\tand tab",
                                  "naïve café — déjà vu", "x = [i**2 for i in range(10)]"])
def test_tokenize_over_the_server_equals_local_tokenize(remote_models, text):
    remote = run_cli("--models", str(remote_models), "tokenize", "-m", "remote", text, "--json")
    local = run_cli("tokenize", text, "--json")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    r, loc = json.loads(remote.stdout), json.loads(local.stdout)
    assert [t["id"] for t in r["tokens"]] == [t["id"] for t in loc["tokens"]]
    assert [t["piece"] for t in r["tokens"]] == [t["piece"] for t in loc["tokens"]]
    assert [(t["start"], t["end"]) for t in r["tokens"]] == [(t["start"], t["end"]) for t in loc["tokens"]]


def test_tokenize_chat_uses_the_servers_template_and_matches_local(remote_models):
    remote = run_cli("--models", str(remote_models), "tokenize", "-m", "remote", "--chat", QUESTION, "--ids")
    bare = run_cli("--models", str(remote_models), "tokenize", "-m", "remote-bare", "--chat", QUESTION, "--ids")
    local = run_cli("tokenize", "--chat", QUESTION, "--ids")
    assert remote.returncode == bare.returncode == local.returncode == 0, remote.stderr + bare.stderr
    assert remote.stdout == local.stdout == bare.stdout


# Measured on this text: |Δ log p| of the local top token between llmchat's float forward of the
# dequantized Q4_1 file and llama-server (Q4_1 weights × Q8_1 activations): median 0.025 nats,
# max 0.165 nats over 26 positions. The bounds leave room for thread-count noise, not for a bug
# (a wrong template, tokenizer or rope would move the median by whole nats).
MEDIAN_NATS, MAX_NATS = 0.06, 0.35
TEXT = ("The capital of France is Paris. It is known for the Eiffel Tower, which was built in 1889 "
        "for the World's Fair.")


def test_remote_probabilities_agree_with_the_local_engine_within_the_quantization_tolerance(remote_source,
                                                                                          smollm2_fp32):
    from llmchat.engine.source import LocalModel

    local = LocalModel(smollm2_fp32, reuse=False)
    ids = local.tokenizer.encode(TEXT)
    diffs = []
    for n in range(2, len(ids)):
        a = local.next_distribution(ids[:n], 5)
        b = {alt.id: alt.prob for alt in remote_source.next_distribution(ids[:n], 5).top}
        top = a.top[0]
        assert top.id in b, f"position {n}: the local top token is not in the server's top 5"
        diffs.append(abs(math.log(top.prob) - math.log(b[top.id])))
    diffs.sort()
    assert diffs[len(diffs) // 2] < MEDIAN_NATS and diffs[-1] < MAX_NATS, diffs


def test_next_entropy_over_the_whole_vocabulary_matches_local(remote_source, smollm2_fp32):
    from llmchat.engine.source import LocalModel

    ids = remote_source.tokenizer.encode("The capital of France is")
    remote = remote_source.next_distribution(ids, 5)
    local = LocalModel(smollm2_fp32, reuse=False).next_distribution(ids, 5)
    assert remote.entropy == pytest.approx(local.entropy, abs=0.1)
    assert remote.top[0].id == local.top[0].id


def test_ask_json_logprobs_has_the_local_shape(remote_models):
    remote = run_cli("--models", str(remote_models), "ask", "-m", "remote", QUESTION, "-t", "0", "-n", "12",
                     "--json", "--logprobs", "5")
    local = run_cli("ask", "--no-server", QUESTION, "-t", "0", "-n", "12", "--json", "--logprobs", "5")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    r, loc = json.loads(remote.stdout), json.loads(local.stdout)
    assert set(r) == set(loc)
    assert set(r["tokens"][0]) == set(loc["tokens"][0])
    assert len(r["tokens"]) == 12 and all(len(t["top"]) == 5 for t in r["tokens"])
    assert r["backend"].startswith("llama.cpp at http://127.0.0.1:") and r["weights"] == "remote llama.cpp"
    assert r["tokens"][0]["entropy"] is None  # the server sends the top K only: not a made-up number


def test_next_cli_over_the_server(remote_models):
    proc = run_cli("--models", str(remote_models), "next", "-m", "remote", "The capital of France is", "-k", "3",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [row["rank"] for row in data["top"]] == [1, 2, 3]
    assert data["top"][0]["text"] == " Paris" and 0 < data["entropy_nats"] < 10


def test_bare_entry_takes_pieces_from_the_servers_bytes(remote_models):
    proc = run_cli("--models", str(remote_models), "ask", "-m", "remote-bare", "Say hello.", "-t", "0", "-n", "8",
                   "--json", "--logprobs", "2")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    text = "".join(t["text"] for t in data["tokens"])
    assert text == data["answer"] and bytes.fromhex("".join(t["bytes"] for t in data["tokens"])).decode() == text


def test_ctrl_c_in_ask_closes_the_stream_keeps_the_partial_answer_and_exits_130(remote_models, llama_server):
    proc = subprocess.Popen([LLMCHAT, "--models", str(remote_models), "ask", "-m", "remote", "Write a long story.",
                             "-t", "0.8", "-n", "1500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(20)  # tokens are arriving
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert first and b"interrupted" in err
    # The engine stops generating once the client goes away: its slot is idle again.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        slots = httpx.get(llama_server.url + "/slots", timeout=5).json()
        if not any(s.get("is_processing") for s in slots):
            break
        time.sleep(0.2)
    assert not any(s.get("is_processing") for s in slots)


def test_models_lists_the_remote_entry_with_its_reachability_and_show_prints_capabilities(remote_models):
    listing = run_cli("--models", str(remote_models), "models", "--json")
    rows = {r["alias"]: r for r in json.loads(listing.stdout)["models"]}
    assert rows["remote"]["source"] == "remote" and rows["remote"]["available"] is True
    assert rows["remote"]["why"].startswith("reachable")
    shown = run_cli("--models", str(remote_models), "models", "show", "remote", "--json")
    info = json.loads(shown.stdout)
    assert info["engine"] == "llama.cpp" and info["max_alternatives"] == "no cap"
    assert info["probabilities"].startswith("raw") and info["token_ids"] == "yes"
    assert info["server_template"] == "yes" and info["context_length"] == 2048


def test_adhoc_url_probes_the_engine(llama_server):
    proc = run_cli("ask", "-m", llama_server.url, "Say hi.", "-t", "0", "-n", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["weights"] == "remote llama.cpp"
    wrong = run_cli("ask", "-m", "tgi+" + llama_server.url, "hi")
    assert wrong.returncode == 2 and "unknown engine 'tgi'" in wrong.stderr


def test_a_remote_entry_is_refused_by_serve(remote_models):
    proc = run_cli("--models", str(remote_models), "serve", "-m", "remote", "--http", "127.0.0.1:0")
    assert proc.returncode == 2 and "remote engine" in proc.stderr and "Traceback" not in proc.stderr


def test_registry_rejects_local_keys_on_a_url_entry(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[models.x]\nurl = "http://127.0.0.1:1"\nquant = "int4"\n')
    proc = run_cli("--models", str(path), "models")
    assert proc.returncode == 2 and "`quant` does not apply here" in proc.stderr
    path.write_text('[models.x]\nurl = "ftp://host"\n')
    proc = run_cli("--models", str(path), "models")
    assert proc.returncode == 2 and "is not an http(s) URL" in proc.stderr
    path.write_text('[models.x]\nurl = "http://h:1"\nengine = "tgi"\n')
    proc = run_cli("--models", str(path), "models")
    assert proc.returncode == 2 and "engine = 'tgi' is not one of" in proc.stderr


def test_client_overhead_is_reported_in_the_finished_event(remote_source):
    """(No timing threshold: bench/remote.py measures the overhead; here only that the numbers exist.)"""
    ids = remote_source.render([{"role": "user", "content": "Count to ten."}])
    _, finished = _greedy(remote_source, ids, n=16, k=5)
    assert remote_source.last_server["predicted_n"] in (finished.generated_tokens, finished.generated_tokens - 1)
    assert finished.decode_tps > 0 and finished.ttft > 0


def test_api_key_env_is_named_never_shown(tmp_path, llama_server):
    path = tmp_path / "m.toml"
    path.write_text(f'[models.k]\nurl = "{llama_server.url}"\nengine = "llama.cpp"\napi_key_env = "MY_KEY"\n'
                    'tokenizer = "smollm2"\n')
    env = dict(os.environ, MY_KEY="sk-secret-123456")
    shown = run_cli("--models", str(path), "models", "show", "k", "--json", env=env)
    assert shown.returncode == 0 and "sk-secret" not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["api_key_env"] == "MY_KEY (set)"
