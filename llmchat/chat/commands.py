"""A pure parser decides message vs command; the table maps names to one-line help.

Text that does not start with "/" is always a message (so "q" or "exit" can be sent). "//text"
sends the message "/text". "/" alone or an unknown command shows the help.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    args: str


COMMANDS: dict[str, tuple[str, str]] = {
    # name: (arguments, help)
    "help": ("", "show this help"),
    "exit": ("", "leave (also Ctrl-D)"),
    "clear": ("", "start a new conversation"),
    "undo": ("", "remove the last exchange"),
    "retry": ("", "sample the last answer again"),
    "system": ("[TEXT|--clear]", "set the system prompt; alone: show it; --clear: remove it"),
    "set": ("KEY VALUE", "temperature, top_p, top_k, min_p, repetition_penalty, max_tokens, seed; alone: show all"),
    "model": ("ALIAS", "switch model (frees the old one)"),
    "view": ("text|tokens|probs", "how answers are shown: markdown text, token boundaries, probabilities"),
    "think": ("show|hide", "stream a reasoning model's thinking, or only its one-line summary"),
    "save": ("[PATH]", "save the conversation as JSON (with per-token data)"),
    "load": ("PATH", "load a saved conversation"),
    "tokens": ("", "the whole conversation as the model sees it: chat template, token boundaries"),
    "inspect": ("[N]", "the last answer's tokens: probability, top-5 alternatives, entropy; N zooms in"),
    "branch": ("N ALT", "redo the last answer from token N with alternative ALT (index or \"text\")"),
    "score": ("[TEXT]", "how surprising the last answer (or TEXT) is to the model: rank and probability per token"),
    "stats": ("", "speed and context of the last answer"),
}


def parse(line: str) -> str | Command:
    """A message (str) or a Command. Leading/trailing whitespace of a message is kept as typed."""
    if line.startswith("//"):
        return line[1:]
    if not line.startswith("/"):
        return line
    name, _, args = line[1:].strip().partition(" ")
    return Command(name.lower() or "help", args.strip())


def help_rows() -> list[tuple[str, str]]:
    return [(f"/{name}" + (f" {args}" if args else ""), text) for name, (args, text) in COMMANDS.items()]
