"""The decode loop on real checkpoints: identity with transformers, probabilities, cache, stops."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmchat.engine.loop import PromptCache, generate
from llmchat.errors import ContextOverflow
from llmchat.engine.events import Finished, TokenEvent
from llmchat.engine.sampling import SamplingParams

TINY = ["tiny-llama", "tiny-deepseek", "tiny-r1"]
GREEDY = SamplingParams(temperature=0, max_new_tokens=24)


def chat_ids(model, text: str, system: str | None = None) -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)


def run(model, ids, params, **kwargs) -> tuple[list[TokenEvent], Finished]:
    events = list(generate(model, ids, params, **kwargs))
    assert isinstance(events[-1], Finished) and all(isinstance(e, TokenEvent) for e in events[:-1])
    return events[:-1], events[-1]


def reference_generate(model, ids, n) -> list[int]:
    """transformers' own generate() on its own modeling code (`model` loaded with backend="transformers")."""
    assert model.backend == "transformers"
    out = model.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                               eos_token_id=list(model.eos_ids), pad_token_id=model.eos_ids[0])
    return out[0][len(ids):].tolist()


def test_llama_shaped_models_run_on_llmchats_own_forward(loaded):
    assert [loaded(a).backend for a in TINY] == ["llmchat", "transformers", "llmchat"]
    assert loaded("tiny-llama").quant == "none"


@pytest.mark.parametrize("alias", TINY)
@pytest.mark.parametrize("backend", ["auto", "transformers"])
def test_greedy_matches_transformers_generate(loaded, reference, alias, backend):
    model = loaded(alias) if backend == "auto" else reference(alias)
    ids = chat_ids(model, "Hello world, what is the capital of France?")
    events, finished = run(model, ids, GREEDY)
    assert [e.id for e in events] == reference_generate(reference(alias), ids, GREEDY.max_new_tokens)
    assert finished.generated_tokens == len(events) and finished.prompt_tokens == len(ids)
    assert all(e.sample_prob == 1.0 for e in events)


@pytest.mark.smollm2
def test_greedy_matches_transformers_generate_on_smollm2(smollm2_fp32, smollm2_reference):
    """llmchat's forward on the dequantized float32 weights = transformers, token for token."""
    assert smollm2_fp32.backend == "llmchat" and smollm2_fp32.quant == "none"
    ids = chat_ids(smollm2_fp32, "Write a short poem about the sea and the stars.")
    params = SamplingParams(temperature=0, max_new_tokens=64)
    events, finished = run(smollm2_fp32, ids, params)
    assert [e.id for e in events] == reference_generate(smollm2_reference, ids, 64)
    assert len(events) == 64 and finished.reason == "length"
    text = "".join(e.text for e in events)
    assert text == smollm2_fp32.tokenizer.decode([e.id for e in events], skip_special_tokens=True)


@pytest.mark.smollm2
def test_a_retry_on_a_cached_prompt_computes_its_last_token_as_a_prompt(smollm2):
    """/retry reuses all but the prompt's last token, which then runs alone (T = 1): it is still a
    prompt token (two int8 passes), so the answer and its probabilities are the fresh prompt's. Run
    as a generated token, it answered "L'Étoile, la Marseillaise, …" (tests/test_tmux.py caught it)."""
    ids = chat_ids(smollm2, "What is the capital of France?")
    cache = PromptCache()
    fresh, _ = run(smollm2, ids, GREEDY, cache=cache)
    again, done = run(smollm2, ids, GREEDY, cache=cache)
    assert done.reused_tokens == len(ids) - 1
    assert [e.id for e in again] == [e.id for e in fresh] and "Paris" in "".join(e.text for e in again)
    assert abs(again[0].prob - fresh[0].prob) < 1e-3


@pytest.mark.smollm2
def test_smollm2_answers_paris(smollm2):
    events, finished = run(smollm2, chat_ids(smollm2, "What is the capital of France?"), GREEDY)
    assert "Paris" in "".join(e.text for e in events)
    assert finished.reason == "eos" and events[-1].is_special and events[-1].piece == "<|im_end|>"
    assert events[-1].text == "" and events[-1].bytes == b""


def test_seeds_are_reproducible_and_differ(loaded):
    model = loaded("tiny-llama")
    ids = chat_ids(model, "Tell me a story")
    def tokens(seed):
        return [e.id for e in run(model, ids, SamplingParams(temperature=1.0, seed=seed, max_new_tokens=30))[0]]
    assert tokens(1) == tokens(1)
    assert tokens(1) != tokens(2)
    greedy = [e.id for e in run(model, ids, SamplingParams(temperature=0, max_new_tokens=30, seed=None))[0]]
    assert greedy == [e.id for e in run(model, ids, SamplingParams(temperature=0, max_new_tokens=30, seed=7))[0]]


def full_forward_probs(model, prefix: list[int]) -> torch.Tensor:
    """A fresh, cache-free forward pass of transformers' own modeling code."""
    with torch.no_grad():
        logits = model.model(torch.tensor([prefix]), use_cache=False).logits[0, -1].float()
    return torch.softmax(logits, -1)


def assert_probs_match_fresh_forward(model, prompt, events):
    prefix = list(prompt)
    for event in events:
        probs = full_forward_probs(model, prefix)
        assert abs(event.prob - float(probs[event.id])) < 1e-4
        for alt in event.alternatives:
            assert abs(alt.prob - float(probs[alt.id])) < 1e-4
        entropy = float(torch.special.entr(probs).sum())
        assert abs(event.entropy - entropy) < 1e-3
        prefix.append(event.id)


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-deepseek", "tiny-r1"])
def test_probabilities_equal_a_fresh_forward_pass_with_prefix_reuse(loaded, reference, alias):
    model, ref = loaded(alias), reference(alias)
    cache = PromptCache()
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=3, max_new_tokens=12)
    turn1 = chat_ids(model, "First question")
    events1, fin1 = run(model, turn1, params, cache=cache)
    assert fin1.reused_tokens == 0
    assert_probs_match_fresh_forward(ref, turn1, events1)
    # Turn 2 extends turn 1 (the next chat turn): only the new tokens are prefilled.
    turn2 = turn1 + [e.id for e in events1] + chat_ids(model, "Second question")[1:]
    events2, fin2 = run(model, turn2, params, cache=cache)
    assert fin2.reused_tokens >= len(turn1)
    assert_probs_match_fresh_forward(ref, turn2, events2)
    # An edited history: the cache is cut back to the common prefix.
    edited = turn1[:5] + chat_ids(model, "Something else entirely")[1:]
    events3, fin3 = run(model, edited, params, cache=cache)
    assert fin3.reused_tokens == 5
    assert_probs_match_fresh_forward(ref, edited, events3)
    assert cache.kv.get_seq_length() == len(cache.tokens)


def test_sample_prob_is_from_the_sampling_distribution(loaded, reference):
    model, ref = loaded("tiny-llama"), reference("tiny-llama")
    ids = chat_ids(model, "Hi")
    events, _ = run(model, ids, SamplingParams(temperature=0.5, top_k=3, seed=0, max_new_tokens=8))
    prefix = list(ids)
    for event in events:
        with torch.no_grad():
            logits = ref.model(torch.tensor([prefix]), use_cache=False).logits[0, -1].float() / 0.5
        top = torch.topk(logits, 3)
        sampling = torch.softmax(top.values, -1)
        assert event.id in top.indices.tolist()
        assert abs(event.sample_prob - float(sampling[top.indices.tolist().index(event.id)])) < 1e-4
        prefix.append(event.id)


def test_eos_list_any_id_stops(loaded):
    model = loaded("tiny-llama")
    ids = chat_ids(model, "Hello")
    first = run(model, ids, GREEDY)[0][1].id  # the second greedy token
    custom = dataclasses.replace(model, eos_ids=(99999, first))
    events, finished = run(custom, ids, GREEDY)
    assert finished.reason == "eos" and len(events) == 2 and events[-1].id == first


@pytest.mark.smollm2
def test_stop_string_across_token_boundaries(smollm2):
    ids = chat_ids(smollm2, "What is the capital of France?")
    full = "".join(e.text for e in run(smollm2, ids, GREEDY)[0])
    assert "capital of France" in full
    events, finished = run(smollm2, ids, GREEDY, stop=["l of Fr"])  # spans " capital", " of", " France"
    assert finished.reason == "stop" and finished.detail == "l of Fr"
    assert "".join(e.text for e in events) == full[:full.index("l of Fr")]


def test_stop_string_that_never_matches_holds_nothing_back(loaded):
    model = loaded("tiny-llama")
    ids = chat_ids(model, "Hello")
    plain = run(model, ids, GREEDY)[0]
    with_stop = run(model, ids, dataclasses.replace(GREEDY, stop=("\x00never",)))[0]
    assert [e.text for e in plain] == [e.text for e in with_stop]


def test_context_window_stop_and_overflow(loaded):
    model = loaded("tiny-llama")
    ids = chat_ids(model, "Hello")
    small = dataclasses.replace(model, context_length=len(ids) + 5)
    cache = PromptCache()
    events, finished = run(small, ids, SamplingParams(temperature=0, max_new_tokens=100), cache=cache)
    if finished.reason != "eos":
        assert (finished.reason, finished.detail) == ("length", "context window")
        assert len(ids) + len(events) == small.context_length
    assert len(cache.tokens) < small.context_length
    with pytest.raises(ContextOverflow, match=f"the prompt is {len(ids)} tokens"):
        list(generate(dataclasses.replace(model, context_length=len(ids)), ids, GREEDY))


def test_max_new_tokens(loaded):
    model = loaded("tiny-deepseek")
    events, finished = run(model, chat_ids(model, "Count"), SamplingParams(temperature=1, seed=1, max_new_tokens=3))
    assert len(events) <= 3
    assert finished.reason in ("length", "eos")


def test_closing_mid_stream_keeps_the_cache_consistent(loaded):
    model = loaded("tiny-llama")
    cache = PromptCache()
    ids = chat_ids(model, "Tell me everything")
    stream = generate(model, ids, SamplingParams(temperature=1, seed=5, max_new_tokens=50), cache=cache)
    taken = [next(stream) for _ in range(5)]
    stream.close()
    assert cache.tokens[:len(ids)] == ids
    # The cache holds the prompt and sampled tokens (it may hold one more than was shown, or one
    # less): whatever it holds agrees with what was shown.
    shown, cached = [e.id for e in taken], cache.tokens[len(ids):]
    n = min(len(shown), len(cached))
    assert cached[:n] == shown[:n] and abs(len(cached) - len(shown)) <= 2
    assert cache.kv.get_seq_length() == len(cache.tokens)
    # Continue the same session from what was shown: probabilities still match a fresh pass.
    resumed = ids + [e.id for e in taken]
    events, finished = run(model, resumed, SamplingParams(temperature=1, seed=6, max_new_tokens=6), cache=cache)
    assert finished.reused_tokens == len(resumed) - 1
    assert_probs_match_fresh_forward(model, resumed, events)


def test_alternatives_off_and_on(loaded):
    model = loaded("tiny-llama")
    ids = chat_ids(model, "Hello")
    events, _ = run(model, ids, GREEDY, alternatives=0)
    assert all(e.alternatives == () for e in events)
    events, _ = run(model, ids, GREEDY, alternatives=7)
    for e in events:
        assert len(e.alternatives) == 7
        assert e.alternatives[0].id == e.id  # greedy picks the top alternative
        assert [a.prob for a in e.alternatives] == sorted((a.prob for a in e.alternatives), reverse=True)


def test_repetition_penalty_changes_the_distribution(loaded):
    model = loaded("tiny-llama")
    ids = chat_ids(model, "again again again")
    plain = run(model, ids, GREEDY)[0]
    penalised = run(model, ids, dataclasses.replace(GREEDY, repetition_penalty=3.0))[0]
    assert [e.id for e in plain] != [e.id for e in penalised] or plain[0].prob != penalised[0].prob


def test_should_stop_interrupts_after_the_current_token(loaded):
    model = loaded("tiny-llama")
    calls = []

    def stop_on_third_check():
        calls.append(1)
        return len(calls) >= 3

    events, finished = run(model, chat_ids(model, "Go"), SamplingParams(temperature=1, seed=2, max_new_tokens=50),
                           should_stop=stop_on_third_check)
    assert finished.reason == "interrupted" and finished.generated_tokens == 3
    assert len(events) <= 3


def test_more_alternatives_than_the_vocabulary(loaded):
    model = loaded("tiny-llama")
    events, _ = run(model, chat_ids(model, "Hi"), SamplingParams(temperature=0, max_new_tokens=2), alternatives=10**6)
    vocab = model.model.shape.vocab
    assert all(len(e.alternatives) == vocab for e in events)
    assert abs(sum(a.prob for a in events[0].alternatives) - 1.0) < 1e-4
