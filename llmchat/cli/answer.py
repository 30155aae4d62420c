"""One prompt through the engine, written as a stream or collected as a JSON record.

Shared by `ask` (single prompt), `ask --jsonl` (batch) and `serve`. The rendering takes a *model
source*: `LocalModel` (the engine in this process) or `serve.client.RemoteModel` (a warm server
streaming the same events), so both paths write the same bytes. torch is imported only when a
local model generates: an `ask` answered by a server never imports it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from .. import prompting
from ..events import Finished
from ..interrupt import StopFlag, sigint_sets
from ..render.json_out import dumps, finished_record, token_record
from ..render.stream import AnswerWriter, RichSink, Sink, stats_line, write_legend
from .common import settings_record


@dataclass
class AnswerResult:
    finished: Finished
    answer: str
    thinking: str
    prompt: prompting.Prompt
    tokens: list[dict] = field(default_factory=list)

    def record(self, source, params, logprobs: int) -> dict[str, Any]:
        """The --json record; `source` is a LoadedModel or a model source (spec, quant, backend)."""
        rec: dict[str, Any] = {
            "model": source.spec.alias, "weights": source.quant, "backend": source.backend,
            "settings": settings_record(params), "raw": not self.prompt.templated,
            "prompt_tokens": len(self.prompt.ids), "answer": self.answer, "thinking": self.thinking or None,
            **finished_record(self.finished),
        }
        if self.prompt.dropped_tokens:
            rec["truncated_tokens"] = self.prompt.dropped_tokens
        if logprobs:
            rec["tokens"] = self.tokens
        return rec


def prepare(loaded, text: str, params, *, system: str | None, raw: bool, truncate: bool) -> prompting.Prompt:
    system = system if system is not None else loaded.spec.system
    if truncate:
        return prompting.truncate(loaded, text, system=system, raw=raw, max_new_tokens=params.max_new_tokens)
    prompt = prompting.build(loaded, text, system=system, raw=raw)
    prompting.check_fits(loaded, prompt, params.max_new_tokens)
    return prompt


class LocalModel:
    """A model source backed by a LoadedModel in this process. `cache` (a PromptCache) is kept by
    callers that answer many prompts and want prefix reuse (the server); None starts fresh."""

    def __init__(self, loaded, cache=None):
        self.loaded, self.cache = loaded, cache
        self.spec, self.quant, self.backend, self.family = loaded.spec, loaded.quant, loaded.backend, loaded.family

    def prepare(self, text: str, params, *, system: str | None, raw: bool, truncate: bool) -> prompting.Prompt:
        return prepare(self.loaded, text, params, system=system, raw=raw, truncate=truncate)

    def generate(self, prompt: prompting.Prompt, params, *, alternatives: int, should_stop):
        from ..engine import generate

        return generate(self.loaded, prompt.ids, params, alternatives=alternatives, should_stop=should_stop,
                        cache=self.cache)


def run_answer(loaded, prompt: prompting.Prompt, params, writer: AnswerWriter, logprobs: int = 0) -> AnswerResult:
    """Stream one answer of a LoadedModel into `writer` (the batch path)."""
    return stream_answer(LocalModel(loaded), prompt, params, writer, logprobs)


def stream_answer(source, prompt: prompting.Prompt, params, writer: AnswerWriter, logprobs: int = 0) -> AnswerResult:
    """Stream one answer from a model source into `writer`; Ctrl-C stops it after the current token."""
    tokens: list[dict] = []
    finished = None
    with sigint_sets(StopFlag()) as stop:
        for item in source.generate(prompt, params, alternatives=logprobs, should_stop=stop):
            if isinstance(item, Finished):
                finished = item
                break
            writer.event(item)
            if logprobs:
                tokens.append(token_record(item))
    writer.finish()
    return AnswerResult(finished, writer.answer_text, writer.thinking_text, prompt, tokens)


class _Null(Sink):
    def __init__(self):
        super().__init__(None)  # type: ignore[arg-type]

    def write(self, text: str, style: str | None = None) -> None:
        pass


def answer_once(source, text: str, params, *, system, raw, truncate, as_json, logprobs, view, verbose,
                hide_thinking, thinking_to_stderr, raw_output) -> Finished:
    """Answer `text` from `source` (LocalModel or RemoteModel) to stdout, or as one JSON record."""
    prompt = source.prepare(text, params, system=system, raw=raw, truncate=truncate)
    if prompt.dropped_tokens:
        print(f"llmchat: note: the prompt did not fit; dropped its first {prompt.dropped_tokens} tokens (--truncate)",
              file=sys.stderr)
    tty = sys.stdout.isatty()
    if as_json:
        writer = AnswerWriter(_Null(), None, family=source.family, starts_thinking=prompt.starts_thinking)
    else:
        from ..render.console import make_console

        out: Sink = RichSink(make_console()) if tty and view != "text" else Sink(sys.stdout, raw=raw_output)
        if hide_thinking:
            think: Sink | None = None
        elif thinking_to_stderr or not tty:
            think = RichSink(make_console(stderr=True)) if sys.stderr.isatty() else Sink(sys.stderr)
        else:
            think = out
        writer = AnswerWriter(out, think, view=view if tty else "text", family=source.family,
                              starts_thinking=prompt.starts_thinking)
    try:
        result = stream_answer(source, prompt, params, writer, logprobs if as_json else 0)
    finally:
        if not as_json:
            writer.end_line()
    if as_json:
        print(dumps(result.record(source, params, logprobs), indent=2))
    elif tty and view == "probs":
        from ..render.console import make_console

        write_legend(make_console(stderr=True))
    if verbose:
        print(stats_line(result.finished, seed=params.seed), file=sys.stderr)
    return result.finished
