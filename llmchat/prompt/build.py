"""Conversation → token ids, through the model's own chat template; raw completion; fitting.

A chat model never sees "messages": it sees one token stream that its chat template makes of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..config.families import Family
from ..config.registry import ModelSpec
from ..errors import ContextOverflow, LlmchatError, ModelRejected, UsageError
from ..signals import time_limit
from ..tokenizer import Tokenizer
from ..tokenizer import templates


class PromptModel(Protocol):
    """What building a prompt needs of a model: its tokenizer (and chat template), its family's
    think markers and its context window. `engine.source.ModelSource` extends it."""

    spec: ModelSpec
    tokenizer: Tokenizer
    family: Family
    context_length: int


@dataclass(frozen=True)
class Prompt:
    """Token ids ready for the engine, and how they were made."""

    ids: list[int]
    templated: bool  # False for --raw (plain completion)
    starts_thinking: bool  # the template's generation prompt already opened the think block
    dropped_tokens: int = 0  # tokens removed from the input by --truncate


def chat_ids(loaded: PromptModel, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    """The chat template applied by transformers (sandboxed jinja2), tokenized."""
    tokenizer = loaded.tokenizer
    if not tokenizer.chat_template:
        raise ModelRejected(f"{loaded.spec.alias} has no chat template",
                            "use --raw for plain completion, or set chat_template in models.toml")
    try:
        with time_limit(templates.TEMPLATE_SECONDS):
            return list(tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                      return_dict=False))
    except LlmchatError:
        raise  # already "chat template rejected: …" (tokenizer/templates.py), or a remote engine's own fault
    except Exception as exc:  # jinja errors, raise_exception() in the template, sandbox violations
        raise ModelRejected(f"chat template rejected: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                            "fix the template or use --raw") from None


def raw_ids(loaded: PromptModel, text: str) -> list[int]:
    """Plain completion: the text as it is, with BOS when the tokenizer adds one."""
    return list(loaded.tokenizer.encode(text, add_special_tokens=True))


def build(loaded: PromptModel, text: str, *, system: str | None = None, raw: bool = False) -> Prompt:
    if raw:
        return Prompt(raw_ids(loaded, text), templated=False, starts_thinking=False)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    ids = chat_ids(loaded, messages)
    return Prompt(ids, templated=True, starts_thinking=opens_thinking(loaded, ids))


def opens_thinking(loaded: PromptModel, ids: list[int]) -> bool:
    """True when the generation prompt ends inside an open think block (R1 templates add "<think>\\n")."""
    marker = loaded.family.think_open
    if not marker:
        return False
    tail = loaded.tokenizer.decode(ids[-8:], skip_special_tokens=False)
    return tail.rstrip().endswith(marker)


def check_context(loaded: PromptModel, prompt: Prompt, max_new_tokens: int) -> None:
    """ContextOverflow (exit 5) when the prompt plus max_new_tokens exceeds the context window."""
    limit = loaded.context_length
    if len(prompt.ids) + max_new_tokens > limit:
        how = "after the chat template" if prompt.templated else "as raw text"
        raise ContextOverflow(
            f"prompt is {len(prompt.ids)} tokens {how}; the context is {limit} (with max-tokens {max_new_tokens})",
            "shorten the input, lower --max-tokens, or pass --truncate to drop the oldest part")


def truncate_to_fit(loaded: PromptModel, text: str, *, system: str | None, raw: bool, max_new_tokens: int,
                    keep: int = 0) -> Prompt:
    """Drop the oldest part of `text` until the prompt plus max_new_tokens fits the context; the
    last `keep` characters (the question after the documents) are never cut."""
    prompt = build(loaded, text, system=system, raw=raw)
    limit = loaded.context_length
    if len(prompt.ids) + max_new_tokens <= limit:
        return prompt
    tokenizer = loaded.tokenizer
    head, tail = (text[:len(text) - keep], text[len(text) - keep:]) if keep else (text, "")
    body = tokenizer.encode(head, add_special_tokens=False)
    overhead = len(prompt.ids) - len(body)
    room = limit - max_new_tokens - overhead
    if room <= 0:  # not even the template (and the question) fit
        alone = build(loaded, tail.lstrip("\n"), system=system, raw=raw) if tail else prompt
        if tail and len(alone.ids) + max_new_tokens > limit:
            raise ContextOverflow(f"the question alone is {len(alone.ids)} tokens with the template; with max-tokens "
                                  f"{max_new_tokens} the context ({limit}) has no room for the documents",
                                  "shorten the question or lower --max-tokens")
        check_context(loaded, prompt if not tail else alone, max_new_tokens)
        room = 1
    dropped = len(body) - room
    for _ in range(4):  # re-tokenizing the cut text can shift a token or two
        candidate = build(loaded, tokenizer.decode(body[dropped:]) + tail, system=system, raw=raw)
        if len(candidate.ids) + max_new_tokens <= limit:
            return Prompt(candidate.ids, candidate.templated, candidate.starts_thinking, dropped_tokens=dropped)
        dropped += len(candidate.ids) + max_new_tokens - limit
    check_context(loaded, candidate, max_new_tokens)
    return candidate


def prepare(loaded: PromptModel, text: str, *, system: str | None, raw: bool, truncate: bool,
            max_new_tokens: int, keep: int = 0) -> Prompt:
    """A one-turn prompt for `ask` / `serve`: the model's own system prompt unless one is given;
    `truncate` drops the oldest part of the text (never its last `keep` characters: the question),
    otherwise a prompt that does not fit is refused."""
    system = system if system is not None else loaded.spec.system
    if truncate:
        return truncate_to_fit(loaded, text, system=system, raw=raw, max_new_tokens=max_new_tokens, keep=keep)
    prompt = build(loaded, text, system=system, raw=raw)
    check_context(loaded, prompt, max_new_tokens)
    return prompt


def score_ids(loaded: PromptModel, text: str, *, chat: bool = False, question: str | None = None,
              system: str | None = None) -> tuple[list[int], int]:
    """The ids for scoring `text` and where the scored part starts (`llmchat score`).

    Plain: the text as a document, with BOS when the tokenizer adds one; the first token of a
    text without BOS has no context and is not scored. `chat`: the text as the assistant's answer
    to `question` (after `system`), rendered by the chat template; only the answer's own tokens
    are scored, never the template's (the end-of-turn tokens after it are left out)."""
    if not text:
        raise UsageError("there is no text to score", "give it as an argument, on stdin, or with -f FILE")
    if not chat:
        return raw_ids(loaded, text), 1
    if question is None:
        raise UsageError("--chat scores the text as the answer to a question", "give it with --prompt Q")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prefix = chat_ids(loaded, messages, add_generation_prompt=True)
    return prefix + list(loaded.tokenizer.encode(text, add_special_tokens=False)), len(prefix)
