"""One prompt answered by a `ModelSource`, written as a stream or collected as a JSON record.

Shared by `ask` (one prompt, in process or through a warm server) and `ask --jsonl` (a batch):
both sources yield the same events, so both paths write the same bytes. The answer is split into
thinking and answer once, here (prompt/thinking.py); the writer only draws the pieces. torch is
imported only when a local model generates: an `ask` answered by a server never imports it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from ..engine.codec import dumps, finished_to_dict, token_to_dict
from ..engine.events import Finished
from ..engine.sampling import SamplingParams
from ..engine.source import ModelSource
from ..prompt.build import Prompt
from ..prompt.thinking import ThinkSplitter
from ..signals import StopFlag, sigint_sets
from .progress import PrefillLine
from .stats import stats_line
from .stream import AnswerWriter, RichSink, Sink
from .styles import write_legend


@dataclass
class AnswerResult:
    finished: Finished
    answer: str
    thinking: str
    prompt: Prompt
    tokens: list[dict] = field(default_factory=list)

    def record(self, source: ModelSource, params: SamplingParams, logprobs: int) -> dict[str, Any]:
        """The --json record."""
        rec: dict[str, Any] = {
            "model": source.spec.alias, "weights": source.weights, "backend": source.backend,
            "settings": params.to_dict(), "raw": not self.prompt.templated,
            "prompt_tokens": len(self.prompt.ids), "answer": self.answer, "thinking": self.thinking or None,
            **finished_to_dict(self.finished),
        }
        if self.prompt.dropped_tokens:
            rec["truncated_tokens"] = self.prompt.dropped_tokens
        if logprobs:
            rec["tokens"] = self.tokens
        return rec


def stream_answer(source: ModelSource, prompt: Prompt, params: SamplingParams, writer: AnswerWriter | None = None,
                  logprobs: int = 0) -> AnswerResult:
    """Generate the answer to `prompt`, drawing it into `writer` (None: collect only); Ctrl-C stops
    it after the current token."""
    tokens: list[dict] = []
    finished = None
    splitter = ThinkSplitter(source.family.think_open, source.family.think_close, prompt.starts_thinking)
    reading = PrefillLine()  # a long prompt shows its progress on a terminal's stderr
    with sigint_sets(StopFlag()) as stop:
        for item in source.generate(prompt.ids, params, alternatives=logprobs, should_stop=stop, on_prefill=reading):
            reading.clear()
            if isinstance(item, Finished):
                finished = item
                break
            pieces = splitter.feed(item.text)
            if writer is not None:
                writer.event(item, pieces)
            if logprobs:
                tokens.append(token_to_dict(item))
    tail = splitter.finish()
    if writer is not None:
        writer.finish(tail)
    return AnswerResult(finished, splitter.answer_text, splitter.thinking_text, prompt, tokens)


def answer_once(source: ModelSource, text: str, params: SamplingParams, *, system, raw, truncate, as_json, logprobs,
                view, verbose, hide_thinking, thinking_to_stderr, raw_output, keep: int = 0) -> Finished:
    """Answer `text` from `source` to stdout, or as one JSON record (--truncate keeps the last
    `keep` characters: the question)."""
    prompt = source.prepare(text, system=system, raw=raw, truncate=truncate, max_new_tokens=params.max_new_tokens,
                            keep=keep)
    if prompt.dropped_tokens:
        print(f"llmchat: note: the prompt did not fit; dropped its first {prompt.dropped_tokens} tokens (--truncate)",
              file=sys.stderr)
    tty = sys.stdout.isatty()
    writer = None
    if not as_json:
        from .console import make_console

        out: Sink = RichSink(make_console()) if tty and view != "text" else Sink(sys.stdout, raw=raw_output)
        if hide_thinking:
            think: Sink | None = None
        elif thinking_to_stderr or not tty:
            think = RichSink(make_console(stderr=True)) if sys.stderr.isatty() else Sink(sys.stderr)
        else:
            think = out
        writer = AnswerWriter(out, think, view=view if tty else "text")
    try:
        result = stream_answer(source, prompt, params, writer, logprobs if as_json else 0)
    finally:
        if writer is not None:
            writer.end_line()
    if as_json:
        print(dumps(result.record(source, params, logprobs), indent=2))
    elif tty and view == "probs":
        from .console import make_console

        write_legend(make_console(stderr=True))
    if verbose:
        print(stats_line(result.finished, seed=params.seed), file=sys.stderr)
    return result.finished
