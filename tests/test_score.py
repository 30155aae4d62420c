"""`llmchat score`: teacher-forced probabilities and ranks, checked against full forward passes."""

from __future__ import annotations

import io
import json
import math
import re

import pytest
import torch
from rich.console import Console

from llmchat.engine.sampling import SamplingParams
from llmchat.engine.score import Score, bucket, score
from llmchat.engine.source import LocalModel
from llmchat.prompt.build import build, score_ids

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs into the forest, where nobody can find it."


def full_logprobs(loaded, ids: list[int]) -> torch.Tensor:
    """An independent reference: one plain forward pass over all ids, no cache, no chunks."""
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def expected(reference_logprobs: torch.Tensor, ids: list[int], start: int) -> tuple[list[float], list[int]]:
    logprobs, ranks = [], []
    for position in range(start, len(ids)):
        row = reference_logprobs[position - 1]
        logprobs.append(float(row[ids[position]]))
        order = torch.argsort(row, descending=True).tolist()  # the full distribution, sorted
        ranks.append(order.index(ids[position]) + 1)
    return logprobs, ranks


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-deepseek", "tiny-r1"])
def test_logprobs_and_ranks_equal_a_full_forward_pass_of_transformers(loaded, reference, alias):
    model, ref = loaded(alias), reference(alias)
    ids, start = score_ids(LocalModel(model), TEXT)
    result = score(model, ids, start, chunk=7)  # chunked through the KV cache
    logprobs, ranks = expected(full_logprobs(ref, ids), ids, start)
    assert [t.event.id for t in result.tokens] == ids[start:]
    assert max(abs(t.event.logprob - lp) for t, lp in zip(result.tokens, logprobs)) < 1e-4
    assert [t.rank for t in result.tokens] == ranks
    assert all(abs(t.event.prob - math.exp(t.event.logprob)) < 1e-9 for t in result.tokens)


def test_the_default_model_with_quant_none_matches_transformers(smollm2_fp32, smollm2_reference):
    ids, start = score_ids(LocalModel(smollm2_fp32), TEXT)
    result = score(smollm2_fp32, ids, start)
    logprobs, ranks = expected(full_logprobs(smollm2_reference, ids), ids, start)
    assert max(abs(t.event.logprob - lp) for t, lp in zip(result.tokens, logprobs)) < 1e-4
    assert [t.rank for t in result.tokens] == ranks
    nll = -sum(logprobs) / len(logprobs)  # perplexity computed independently, from the reference
    assert result.perplexity == pytest.approx(math.exp(nll), rel=1e-4)
    assert result.nll == pytest.approx(nll, abs=1e-4)


def test_a_greedy_answer_scores_top_1_on_every_token(smollm2_fp32):
    """On the float weights: the int4 kernels give prefill and single-token decode logits that differ
    by up to ~0.05 nats, enough to swap a near-tie (see the README's score section)."""
    source = LocalModel(smollm2_fp32, reuse=False)
    prompt = build(source, "Name three colours of the rainbow.")
    events = [e for e in source.generate(prompt.ids, SamplingParams(temperature=0, max_new_tokens=24))
              if not hasattr(e, "reason")]
    answer = [e.id for e in events if not e.is_special]
    result = source.score(prompt.ids + answer, len(prompt.ids))
    assert len(result.tokens) == len(answer) >= 10
    assert [t.rank for t in result.tokens] == [1] * len(answer)
    assert result.shares()["top-1"] == 1.0


def test_windows_score_every_token_once_and_match_one_pass_where_both_fit(loaded, reference):
    model, ref = loaded("tiny-llama"), reference("tiny-llama")
    ids, start = score_ids(LocalModel(model), TEXT * 2)
    one = score(model, ids, start)
    assert one.windows == 1
    assert _logprobs(score(model, ids, start, chunk=5)) == pytest.approx(_logprobs(one), abs=1e-5)
    assert _logprobs(score(model, ids, start, window=len(ids))) == pytest.approx(_logprobs(one), abs=1e-5)
    window = 16
    windowed = score(model, ids, start, window=window)
    assert [t.event.id for t in windowed.tokens] == ids[start:]  # each token exactly once
    assert windowed.windows == 1 + math.ceil((len(ids) - window) / (window // 2))
    first = window - start  # tokens of the first window: the same context as one pass
    assert _logprobs(windowed)[:first] == pytest.approx(_logprobs(one)[:first], abs=1e-5)
    # a later token is scored with the window it falls in: begin = its window's start
    position = window + window // 2 + 3
    begin = ((position - window) // (window // 2) + 1) * (window // 2)
    reference_row = full_logprobs(ref, ids[begin:position + 1])[-2]
    assert windowed.tokens[position - start].event.logprob == pytest.approx(float(reference_row[ids[position]]), abs=1e-4)
    assert position - begin >= window // 2  # at least half a window of context


def _logprobs(result: Score) -> list[float]:
    return [t.event.logprob for t in result.tokens]


def test_chat_scoring_leaves_the_template_out(loaded):
    source = LocalModel(loaded("tiny-llama"))
    ids, start = score_ids(source, "Fine, thanks.", chat=True, question="How are you?")
    prefix = source.render([{"role": "user", "content": "How are you?"}])
    assert ids[:start] == prefix and ids[start:] == source.tokenizer.encode("Fine, thanks.", add_special_tokens=False)
    result = source.score(ids, start)
    assert "".join(t.event.text for t in result.tokens) == "Fine, thanks."


def test_buckets():
    assert [bucket(r) for r in (1, 2, 10, 11, 100, 101, 50000)] == [
        "top-1", "top-10", "top-10", "top-100", "top-100", "beyond", "beyond"]


def test_heatmap_colours_by_rank_and_falls_back_to_markers(loaded):
    from llmchat.render import score_view

    source = LocalModel(loaded("tiny-llama"))
    result = source.score(*score_ids(source, TEXT))
    coloured = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=200)
    score_view.heatmap(coloured, result, "rank")
    painted = coloured.file.getvalue()
    first_line = painted.split("\n")[0]
    def rgb(style: str) -> str:
        colour = style.split(" on #")[1]
        return ";".join(str(int(colour[i:i + 2], 16)) for i in (0, 2, 4))

    painted_backgrounds = set(re.findall(r"48;2;(\d+;\d+;\d+)m", first_line))
    assert painted_backgrounds == {rgb(score_view.BUCKET_STYLES[t.bucket]) for t in result.tokens}  # one per bucket present
    assert "\x1b[2;" not in first_line
    assert " #" not in first_line and "top-100" in painted  # colours instead of markers; the legend names buckets
    plain = Console(file=io.StringIO(), force_terminal=False, color_system=None, width=200)
    score_view.heatmap(plain, result, "rank")
    text = plain.file.getvalue()
    beyond = [t for t in result.tokens if t.rank > score_view.MARK_BEYOND]
    markers = re.findall(r"\[[^\]]*% #(\d+)\]", text.splitlines()[0])
    assert beyond and [int(m) for m in markers] == [t.rank for t in beyond] and "\x1b[" not in text
    assert "perplexity" in score_view.summary(result) and f"{len(result.tokens)} tokens scored" in score_view.summary(result)


def test_cli_true_sentence_is_less_surprising_than_a_false_one(cli):
    runs = {}
    for name, text in (("true", "The capital of France is Paris."), ("false", "The capital of France is Berlin.")):
        proc = cli("score", "--json", text)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        runs[name] = json.loads(proc.stdout)
    true, false = runs["true"], runs["false"]
    assert true["summary"]["perplexity"] < false["summary"]["perplexity"]
    assert false["summary"]["most_surprising"][0]["text"] in (" Berlin", " capital")
    token = true["tokens"][0]
    asked = json.loads(cli("ask", "--json", "--logprobs", "2", "-n", "2", "hi").stdout)["tokens"][0]
    assert set(token) == set(asked) | {"rank"}  # the ask --json --logprobs record, plus rank
    assert true["context_tokens"] == 1 and len(true["tokens"]) == 6
    mean = -sum(t["logprob"] for t in true["tokens"]) / len(true["tokens"])
    assert true["summary"]["perplexity"] == pytest.approx(math.exp(mean), rel=1e-9)


def test_cli_scores_its_own_greedy_answer_top_1(cli):
    question = "What colour is the sky?"
    asked = json.loads(cli("ask", "--quant", "none", "--json", "--logprobs", "1", "-t", "0", "-n", "30", question).stdout)
    proc = cli("score", "--quant", "none", "--json", "--chat", "--prompt", question, asked["answer"])
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(proc.stdout)["tokens"]
    # the pasted answer re-tokenizes to the tokens the model wrote (not true of every text: see the README)
    assert [t["id"] for t in scored] == [t["id"] for t in asked["tokens"] if not t["special"]]
    assert len(scored) >= 10 and [t["rank"] for t in scored] == [1] * len(scored)
    assert max(abs(a["logprob"] - b["logprob"]) for a, b in zip(asked["tokens"], scored)) < 1e-4


def test_cli_views_in_a_pipe(cli):
    heat = cli("score", "The capital of France is Paris.")
    assert heat.returncode == 0 and "\x1b[" not in heat.stdout
    lines = heat.stdout.splitlines()
    assert lines[0].startswith("The capital[") and "#" in lines[0]  # plain text, a marker after the surprising token
    assert lines[-1].startswith("6 tokens scored · mean NLL") and "perplexity" in lines[-1] and "top-1" in lines[-1]
    table = cli("score", "--table", "-k", "2", "The capital of France is Paris.")
    rows = table.stdout.splitlines()
    assert rows[0].split()[:5] == ["#", "token", "prob", "rank", "entropy"] and len(rows) == 1 + 6 + 1
    assert all(row == row.rstrip() for row in rows)  # no padding in pipes


@pytest.mark.parametrize("args, code, fragment", [
    (["--chat", "hello"], 2, "--prompt Q"),
    (["--prompt", "q", "hello"], 2, "add --chat"),
    (["--by", "colour", "x"], 2, "--by 'colour'"),
    (["--window", "1", "x"], 2, "--window must be"),
    (["--chat", "--prompt", "word " * 40, "--window", "16", "an answer"], 5, "larger --window"),
    (["--window", "100000", "three words here"], 5, "larger than the context"),
    (["x"], 2, "one token"),
])
def test_cli_errors_are_one_line(cli, args, code, fragment):
    proc = cli("score", *args)
    assert proc.returncode == code and proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_long_text_is_scored_in_windows_not_cut(cli, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT * 8)
    proc = cli("score", "--json", "--window", "64", "-f", str(doc))
    data = json.loads(proc.stdout)
    assert data["windows"] > 1 and "".join(t["text"] for t in data["tokens"]) == (TEXT * 8)[len("The"):]


def test_chat_score_command(loaded, tmp_path):
    from llmchat.chat.session import Session
    from test_chat import run_repl

    session = Session(source=LocalModel(loaded("tiny-llama")), params=SamplingParams(temperature=0, max_new_tokens=8))
    text = run_repl(session, ["/score", "Hello there", "/score", "/score a pasted text", "/exit"], tmp_path)
    assert "no answer to score yet" in text
    assert text.count("tokens scored") == 2 and "perplexity" in text
    result = session.score()
    assert [t.event.id for t in result.tokens] == [e.id for e in session.exchanges[-1].events]
