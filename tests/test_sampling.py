"""Filters and sampler: property tests over random logits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmchat.errors import UsageError
from llmchat.engine.sampling import (SamplingParams, apply_repetition_penalty, make_generator, make_sampler, min_p_filter,
                              top_k_filter, top_p_filter)

logit_lists = st.lists(st.floats(-20, 20, allow_nan=False, allow_infinity=False), min_size=1, max_size=64)


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


@settings(max_examples=200, deadline=None)
@given(logit_lists, st.integers(1, 80))
def test_top_k_keeps_k_highest_ties_included(values, k):
    logits = torch.tensor(values)
    values = logits.tolist()  # compare in float32, as the filter sees them
    out = top_k_filter(logits, k)
    keep = kept(out)
    if k >= len(values):
        assert keep == set(range(len(values)))
        return
    kth = sorted(values, reverse=True)[k - 1]
    # Exactly the tokens at or above the k-th value: k of them, more only when tied with the k-th.
    assert keep == {i for i, v in enumerate(values) if v >= kth}
    assert len(keep) >= k
    if values.count(kth) == 1:
        assert len(keep) == k


@settings(max_examples=200, deadline=None)
@given(logit_lists, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_prefix_reaching_p(values, p):
    logits = torch.tensor(values)
    keep = kept(top_p_filter(logits, p))
    probs = torch.softmax(logits, -1)
    assert any(float(probs[i]) == float(probs.max()) for i in keep)  # a most probable token always survives
    mass = float(probs[list(keep)].sum())
    assert mass >= p - 1e-5 or len(keep) == len(values)
    # Minimal: dropping the least probable kept token would fall below p.
    smallest = min(float(probs[i]) for i in keep)
    assert mass - smallest < p + 1e-5


@settings(max_examples=200, deadline=None)
@given(logit_lists, st.floats(0.0, 0.99))
def test_min_p_keeps_tokens_above_fraction_of_max(values, min_p):
    logits = torch.tensor(values)
    keep = kept(min_p_filter(logits, min_p))
    probs = torch.softmax(logits, -1)
    top = float(probs.max())
    for i, prob in enumerate(probs.tolist()):
        if prob >= min_p * top + 1e-7:
            assert i in keep
        if prob < min_p * top - 1e-7:
            assert i not in keep


@settings(max_examples=150, deadline=None)
@given(logit_lists, st.floats(0.1, 2.0), st.integers(0, 10), st.floats(0.05, 1.0), st.floats(0.0, 0.5), st.integers(0, 2**31))
def test_sampled_token_is_in_the_kept_set_and_distribution_sums_to_one(values, temperature, k, p, min_p, seed):
    logits = torch.tensor(values)
    params = SamplingParams(temperature=temperature, top_k=k, top_p=p, min_p=min_p)
    filtered = min_p_filter(top_p_filter(top_k_filter(logits / temperature, k), p), min_p)
    probs = torch.softmax(filtered, -1)
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    token, sample_prob = make_sampler(params, make_generator(seed))(logits)
    assert token in kept(filtered)
    assert abs(sample_prob - float(probs[token])) < 1e-6


def test_greedy_is_argmax():
    logits = torch.tensor([0.1, 3.0, 2.9])
    assert make_sampler(SamplingParams(temperature=0), None)(logits) == (1, 1.0)


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0])
    seen = torch.tensor([0, 1, 1, 3])
    ours = apply_repetition_penalty(logits, seen, 1.3)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(seen[None], logits[None].clone())[0]
    assert torch.allclose(ours, theirs)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top-p"), ({"top_p": 1.5}, "top-p"),
    ({"top_k": -2}, "top-k"), ({"min_p": 1.0}, "min-p"), ({"max_new_tokens": 0}, "max tokens"),
    ({"repetition_penalty": 0}, "repetition"), ({"stop": ("",)}, "stop"),
])
def test_invalid_params_are_usage_errors(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        SamplingParams(**kwargs)
