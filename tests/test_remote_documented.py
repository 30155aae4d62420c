"""vLLM, SGLang and OpenAI-compatible servers, which cannot run on these machines, checked
against the bodies their documentation and source show (tests/data/remote/*.json, each naming
where it came from; tests/peers/documented.py serves them). What llmchat sends is compared with
the documented request, and what it makes of the documented answer with the numbers in it."""

from __future__ import annotations

import json
import math

import pytest

from conftest import run_cli
from peers.documented import DocumentedServer, fixture, openai_routes, sglang_routes, vllm_routes

pytestmark = pytest.mark.smollm2  # tokenizer = "smollm2": the fixtures carry SmolLM2's ids

PROMPT = [504, 3575, 282, 4649, 314]  # "The capital of France is" in SmolLM2's vocabulary


@pytest.fixture
def serve():
    servers = []

    def start(routes):
        servers.append(DocumentedServer(routes))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _source(url: str, engine: str, notes: list[str], **extra):
    from llmchat.config.registry import ModelSpec, load_registry
    from llmchat.model.files import tokenizer_folder
    from llmchat.remote.source import RemoteEngine
    from llmchat.tokenizer.lite import LiteTokenizer

    spec = ModelSpec(alias="doc", source="remote", location=url, engine=engine, timeout=10.0, **extra)
    tspec = load_registry().get("smollm2")
    return RemoteEngine(spec, local_tokenizer=LiteTokenizer(tokenizer_folder(tspec, check=False), tspec),
                        notice=notes.append)


def _run(source, ids, **params):
    from llmchat.engine.events import Finished
    from llmchat.engine.sampling import SamplingParams

    k = params.pop("k", 2)
    events = list(source.generate(ids, SamplingParams(**params), alternatives=k))
    assert isinstance(events[-1], Finished)
    return events[:-1], events[-1]


def _status_error(status: int, text: str, path: str):
    """What llmchat makes of an engine's error answer (no server needed)."""
    from llmchat.remote.http import Http

    return Http("http://127.0.0.1:1", read_timeout=5).status_error(status, text, path)


def _documented_tokens(chunks):
    """(id, logprob, top-K sorted) per token, read straight from vLLM's documented stream."""
    out = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            lp = choice["logprobs"]
            for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
                ranked = sorted(((int(t.split(":")[1]), v) for t, v in top.items()), key=lambda a: -a[1])
                out.append((int(token.split(":")[1]), value, ranked))
    return out


# ---------------------------------------------------------------------------------------- vLLM
def test_vllm_request_is_the_documented_one_and_the_stream_becomes_its_numbers(serve):
    doc = fixture("vllm_completions_stream")
    server = serve(vllm_routes())
    notes: list[str] = []
    source = _source(server.url, "vllm", notes)
    events, finished = _run(source, PROMPT, temperature=1.0, max_new_tokens=3, k=2)
    assert server.sent("/v1/completions") == [doc["request"]]
    want = _documented_tokens(doc["chunks"])
    assert [e.id for e in events] == [w[0] for w in want] == [7042, 28, 260]
    for event, (_, logprob, ranked) in zip(events, want):
        assert event.logprob == pytest.approx(logprob, abs=1e-12)
        # the sampled token is always in vLLM's dict, even off the top K (" the" at rank 4): K sorted, not K+1
        assert [a.id for a in event.alternatives] == [i for i, _ in ranked[:2]]
        assert [math.log(a.prob) for a in event.alternatives] == pytest.approx([v for _, v in ranked[:2]], abs=1e-12)
        assert math.isnan(event.sample_prob) and math.isnan(event.entropy)  # sampled: unknown, not a made-up number
    assert "".join(e.text for e in events) == " Paris, the"
    assert (finished.reason, finished.prompt_tokens, finished.generated_tokens) == ("length", 5, 3)
    assert notes == []


def test_vllm_caps_alternatives_at_20_and_says_so_once(serve):
    server = serve(vllm_routes())
    notes: list[str] = []
    source = _source(server.url, "vllm", notes)
    _run(source, PROMPT, temperature=1.0, max_new_tokens=3, k=25)
    _run(source, PROMPT, temperature=1.0, max_new_tokens=3, k=25)
    assert [body["logprobs"] for body in server.sent("/v1/completions")] == [20, 20]
    assert notes == ["vllm returns at most 20 alternatives per token; showing 20 "
                     "(start vLLM with --max-logprobs N for more)"]


def test_vllm_over_its_cap_is_the_documented_400_in_one_line():

    body = fixture("vllm_errors")["logprobs_too_many"]["body"]
    error = _status_error(400, json.dumps(body), "/v1/completions")
    assert "answered 400" in error.message and "greater than max allowed: 20" in error.message


def test_vllm_template_and_tokenize_go_to_its_tokenize_endpoint(serve):
    doc = fixture("vllm_tokenize")
    server = serve(vllm_routes())
    source = _source(server.url, "vllm", [])
    assert source.render(doc["request_messages"]["messages"]) == doc["response_messages"]["tokens"]
    assert server.sent("/tokenize")[-1] == doc["request_messages"]
    assert source.caps.context == 8192 and source.caps.max_k == 20 and source.caps.probs == "raw"


@pytest.mark.parametrize("case", ["prompt_too_long", "body_vllm_0_11"])
def test_vllm_context_errors_report_the_counts(case):
    from llmchat.errors import ContextOverflow

    errors = fixture("vllm_errors")["prompt_too_long"]
    body = errors["body"] if case == "prompt_too_long" else errors["body_vllm_0_11"]
    error = _status_error(400, json.dumps(body), "/v1/completions")
    context = 8192 if case == "prompt_too_long" else 8176
    assert isinstance(error, ContextOverflow)
    assert f"9000 prompt tokens, the server's context is {context}" in error.message


def test_vllm_wrong_model_lists_what_it_serves(serve):
    from llmchat.errors import ModelNotFound

    server = serve(vllm_routes())
    with pytest.raises(ModelNotFound, match="serves: HuggingFaceTB/SmolLM2-135M-Instruct"):
        _source(server.url, "vllm", [], served_model="llama-70b")


def test_an_engine_is_found_by_probing(serve):
    from llmchat.remote.engines import detect
    from llmchat.remote.http import Http

    for routes, name in ((vllm_routes(), "vllm"), (sglang_routes(), "sglang"), (openai_routes(), "openai")):
        server = serve(routes)
        assert detect(Http(server.url, read_timeout=5)) == name


# -------------------------------------------------------------------------------------- SGLang
@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental-streaming-output"])
def test_sglang_stream_cumulative_or_incremental_gives_each_token_once(serve, incremental):
    doc = fixture("sglang_generate_stream")
    server = serve(sglang_routes(incremental))
    source = _source(server.url, "sglang", [])
    events, finished = _run(source, PROMPT, temperature=1.0, max_new_tokens=3, k=2)
    assert server.sent("/generate") == [doc["request"]]
    last = doc["chunks"][-1]["meta_info"]  # cumulative: the whole answer
    assert [e.id for e in events] == [t[1] for t in last["output_token_logprobs"]] == [7042, 28, 260]
    for event, token, top in zip(events, last["output_token_logprobs"], last["output_top_logprobs"]):
        assert event.logprob == pytest.approx(token[0], abs=1e-12)
        assert [a.id for a in event.alternatives] == [a[1] for a in top]
    assert (finished.reason, finished.prompt_tokens, finished.reused_tokens) == ("length", 5, 0)


def test_sglang_sampling_names_are_ones_it_accepts(serve):
    allowed = fixture("sglang_errors")["unknown_sampling_param"]["body"]["error"]
    server = serve(sglang_routes())
    source = _source(server.url, "sglang", [])
    _run(source, PROMPT, temperature=1.0, max_new_tokens=3, top_k=5, top_p=0.9, min_p=0.05,
         repetition_penalty=1.1, seed=7, stop=("xyz",))
    sent = server.sent("/generate")[-1]["sampling_params"]
    assert sent["sampling_seed"] == 7 and sent["top_k"] == 5
    assert all(f"`{name}`" in allowed for name in sent), sent


def test_sglang_probabilities_after_temperature_are_not_shown_as_the_models(serve):
    server = serve(sglang_routes())
    notes: list[str] = []
    source = _source(server.url, "sglang", notes)
    events, _ = _run(source, PROMPT, temperature=0.7, max_new_tokens=3, k=2)
    assert all(math.isnan(e.prob) and not e.alternatives for e in events)
    assert [e.id for e in events] == [7042, 28, 260]  # the tokens still come
    assert len(notes) == 1 and "after temperature 0.7" in notes[0] and "SGLANG_RETURN_ORIGINAL_LOGPROB=1" in notes[0]


def test_sglang_next_end_of_sequence_and_abort(serve):
    from llmchat.errors import ContextOverflow
    from llmchat.remote.engines import SGLang

    server = serve(sglang_routes())
    source = _source(server.url, "sglang", [])
    dist = source.next_distribution(PROMPT, k=3)
    assert [a.id for a in dist.top] == [7042, 260, 4528] and math.isnan(dist.entropy)
    assert dist.top[0].prob == pytest.approx(math.exp(-0.24682696163654327))
    eos = SGLang.parse(source.adapter, fixture("sglang_generate")["response_eos"], {"stream": False})
    assert eos.done and eos.reason == "eos" and eos.tokens[0].id == 2
    abort = fixture("sglang_errors")["abort_in_stream"]["chunks"][0]
    with pytest.raises(ContextOverflow, match="exceeds the maximum allowed length"):
        SGLang.parse(source.adapter, abort, {"stream": True})


def test_sglang_without_a_tokenize_endpoint_tokenizes_with_the_entrys_tokenizer(serve, tmp_path):
    server = serve(sglang_routes())
    path = tmp_path / "models.toml"
    path.write_text(f'[models.sg]\nurl = "{server.url}"\nengine = "sglang"\ntokenizer = "smollm2"\n[models.bare]\n'
                    f'url = "{server.url}"\nengine = "sglang"\n', encoding="utf-8")
    remote = run_cli("--models", str(path), "tokenize", "-m", "sg", "--ids", "The capital of France is")
    local = run_cli("tokenize", "-m", "smollm2", "--ids", "The capital of France is")
    assert remote.returncode == 0 and remote.stdout == local.stdout, remote.stderr
    assert remote.stdout.split() == [str(i) for i in PROMPT]
    bare = run_cli("--models", str(path), "tokenize", "-m", "bare", "hi")
    assert bare.returncode != 0 and "set `tokenizer =`" in bare.stderr and "Traceback" not in bare.stderr


@pytest.mark.parametrize("case", ["prompt_too_long", "total_too_long"])
def test_sglang_context_errors_report_the_counts(case):
    from llmchat.errors import ContextOverflow

    body = fixture("sglang_errors")[case]["body"]
    error = _status_error(400, json.dumps(body), "/generate")
    assert isinstance(error, ContextOverflow)
    prompt = 9000 if case == "prompt_too_long" else 8180
    assert f"{prompt} prompt tokens, the server's context is 8192" in error.message


# ------------------------------------------------------------------------ OpenAI-compatible
def _openai_entry(tmp_path, url):
    path = tmp_path / "models.toml"
    path.write_text(f'[models.api]\nurl = "{url}"\nengine = "openai"\n', encoding="utf-8")
    return str(path)


def test_openai_text_level_ask_streams_text_and_probabilities_without_ids(serve, tmp_path):
    doc = fixture("openai_chat_stream")
    server = serve(openai_routes())
    models = _openai_entry(tmp_path, server.url)
    proc = run_cli("--models", models, "ask", "-m", "api", "Hello!", "-t", "0.7", "-n", "3", "--top-p", "1",
                   "--json", "--logprobs", "2", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    sent = server.sent("/v1/chat/completions")[-1]
    assert {k: v for k, v in sent.items() if k != "seed"} == doc["request"] and sent["seed"] == 1
    record = json.loads(proc.stdout)
    contents = [c for chunk in doc["chunks"] for choice in chunk["choices"]
                for c in ((choice.get("logprobs") or {}).get("content") or [])]
    assert record["answer"] == "".join(c["token"] for c in contents) == "Hello! How"
    assert [t["id"] for t in record["tokens"]] == [None] * 3  # no ids: null, never a made-up number
    for token, content in zip(record["tokens"], contents):
        assert token["logprob"] == pytest.approx(content["logprob"])
        assert [a["piece"] for a in token["top"]] == [a["token"] for a in content["top_logprobs"]]
        assert token["entropy"] is None and token["sample_prob"] is None
    assert record["prompt_tokens"] == 9  # the server's own count (usage), not the estimate
    assert "text level" in proc.stderr and "/branch" in proc.stderr


def test_openai_text_level_refuses_token_work_in_one_line(serve, tmp_path):
    server = serve(openai_routes())
    models = _openai_entry(tmp_path, server.url)
    for args in (["next", "-m", "api", "The capital of France is"], ["tokenize", "-m", "api", "hi"],
                 ["ask", "-m", "api", "--raw", "hi"]):
        proc = run_cli("--models", models, *args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("llmchat: error:")]
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(errors) == 1 and "text level" in errors[0], proc.stderr


def test_openai_text_level_chat_keeps_the_answer_when_branch_is_refused(serve):
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams
    from llmchat.errors import UsageError
    from llmchat.remote.source import RemoteEngine
    from llmchat.config.registry import ModelSpec

    server = serve(openai_routes())
    source = RemoteEngine(ModelSpec(alias="api", source="remote", location=server.url, engine="openai", timeout=10.0),
                          notice=lambda line: None)
    session = Session(source=source, params=SamplingParams(temperature=0.7, max_new_tokens=3))
    list(session.ask("Hello!"))
    answer = session.exchanges[-1].answer
    assert answer == "Hello! How"
    with pytest.raises(UsageError, match="text level"):
        session.branch(1, "0")
    assert session.exchanges[-1].answer == answer and len(session.exchanges[-1].events) == 3
    list(session.retry())  # /retry re-sends the messages
    assert server.sent("/v1/chat/completions")[-1]["messages"] == [{"role": "user", "content": "Hello!"}]
