"""`llmchat tokenize` — how a model's tokenizer cuts a text, and what a chat prompt really is.

Needs only the `tokenizers` library and the model's tokenizer files (never torch, never weights):
for a GGUF model the tokenizer is extracted into the cache once, later runs read the cache.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import app
from ..errors import UsageError


@app.command("tokenize")
def tokenize(
    ctx: typer.Context,
    text: Optional[str] = typer.Argument(
        None, metavar="TEXT", help="The text (with --decode: the ids). Default: -f FILE, else stdin."),
    model: Optional[str] = typer.Option(
        None, "-m", "--model", metavar="MODEL", help="Alias, model folder, .gguf file or repo id (default: the default)."),
    file: Optional[str] = typer.Option(None, "-f", "--file", metavar="FILE", help="Read the text from FILE ('-': stdin)."),
    decode: bool = typer.Option(False, "--decode", help='The input is token ids ("1 2 3"): show them as text.'),
    chat: bool = typer.Option(False, "--chat", help="Render a conversation through the model's chat template."),
    system: Optional[str] = typer.Option(
        None, "-s", "--system", metavar="SYSTEM", help="With --chat: a system message before the text."),
    messages: Optional[str] = typer.Option(
        None, "--messages", metavar="FILE.json", help="With --chat: the conversation, a JSON list of {role, content}."),
    compare: Optional[str] = typer.Option(
        None, "--compare", metavar="M1,M2,...", help="Tokenize with several models side by side."),
    special: Optional[bool] = typer.Option(
        None, "--special/--no-special",
        help="Read special-token strings in the text (<|im_start|>) as special tokens. Default: as plain text."),
    show_whitespace: bool = typer.Option(False, "--show-whitespace", "-w", help="Show · space, → tab, ↵ newline."),
    ids: bool = typer.Option(False, "--ids", help="Print the ids only, separated by spaces."),
    table: bool = typer.Option(False, "--table", help="One row per token: index, id, piece, text, bytes, offsets."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    count: bool = typer.Option(False, "--count", help="Print the number of tokens only."),
    color: Optional[bool] = typer.Option(
        None, "--color/--no-color", help="Colours on or off (default: on for a terminal, off with NO_COLOR)."),
) -> None:
    """Show how a model's tokenizer cuts a text into tokens (no weights are loaded).

    By default special-token strings in the text (like "<|im_start|>") are tokenized as plain
    text, as they would be in a user's message; --special reads them as the control tokens.
    With --chat the whole rendered prompt is tokenized as transformers does it: control tokens
    are special wherever they appear.
    """
    from ..model.files import tokenizer_folder
    from ..render.progress import terminal_progress
    from ..tokenizer.analysis import parse_ids, tokenize as tokenize_one

    flags = (("--ids", ids), ("--table", table), ("--json", as_json), ("--count", count))
    outputs = [name for name, on in flags if on]
    _check_combination(outputs, text, model, file, decode, chat, system, messages, compare, special)
    registry = ctx.obj.registry()
    specs = [registry.get(name) for name in _model_names(compare)] if compare else [registry.get(model)]
    source = None if messages else _read_input(text, file)
    conversation = _conversation(source, system, messages) if chat else None
    id_list = parse_ids(source) if decode else None

    def one(spec):
        if spec.source == "remote":  # the server cuts the text and renders its own template
            from ..remote.tokenize import tokenize as tokenize_remote
            from .common import open_source

            remote = open_source(spec, registry)
            if not remote.caps.server_tokenize and remote.caps.token_ids and spec.tokenizer:
                # no tokenize endpoint (SGLang): the entry's own tokenizer is the one the ids go through
                import dataclasses

                tspec = registry.get(spec.tokenizer)
                local = tokenize_one(tspec, tokenizer_folder(tspec, progress=terminal_progress(), check=False),
                                     text=source, conversation=conversation, ids=id_list, special=bool(special))
                note = f"tokenized here by {spec.tokenizer}'s tokenizer ({remote.caps.engine} has no tokenize endpoint)"
                return dataclasses.replace(local, model=spec.alias, notes=[*local.notes, note])
            return tokenize_remote(remote, text=source, conversation=conversation, ids=id_list, special=bool(special))
        return tokenize_one(spec, tokenizer_folder(spec, progress=terminal_progress(), check=False), text=source,
                            conversation=conversation, ids=id_list, special=bool(special))

    results = [one(spec) for spec in specs]
    # A chat prompt's newlines are part of its format: mark them even without -w.
    whitespace = show_whitespace or ("newlines" if chat else False)
    _print(results, outputs[0] if outputs else None, whitespace, color, compared=compare is not None)


def _check_combination(outputs, text, model, file, decode, chat, system, messages, compare, special) -> None:
    if len(outputs) > 1:
        raise UsageError(f"{' and '.join(outputs)} cannot be combined",
                         "choose one output: --ids, --table, --json or --count")
    if (system is not None or messages) and not chat:
        raise UsageError(f"{'-s/--system' if system is not None else '--messages'} needs --chat", "add --chat")
    if decode and chat:
        raise UsageError("--decode cannot be combined with --chat (--decode shows ids as text, --chat renders messages)",
                         "to see a conversation's ids use --chat without --decode, then --decode those ids")
    if decode and compare:
        raise UsageError("--decode cannot be combined with --compare", "token ids belong to one model: use -m MODEL --decode")
    if messages and (text is not None or file or system is not None):
        raise UsageError("--messages holds the whole conversation: give no TEXT, -f or -s with it",
                         "put the system and user messages in the JSON file")
    if text is not None and file:
        raise UsageError("give the text either as an argument or with -f, not both", "drop one of them")
    if compare is not None and model:
        raise UsageError("--compare names the models: do not give -m with it", "e.g. --compare smollm2,tiny-llama")
    if special is not None and (chat or decode):
        raise UsageError(f"--special/--no-special apply to plain text, not to {'--chat' if chat else '--decode'}",
                         "a chat prompt's control tokens are always special")


def _model_names(compare: str) -> list[str]:
    names = [name.strip() for name in compare.split(",") if name.strip()]
    if not names:
        raise UsageError("--compare needs model names", "e.g. --compare smollm2,tiny-llama")
    return names


def _read_input(text: str | None, file: str | None) -> str:
    """The argument, else -f FILE, else stdin (which must not be a terminal)."""
    if text is not None:
        return text
    if file and file != "-":
        path = Path(file).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "check the path given with -f") from None
        return _utf8(data, str(path))
    if not file and sys.stdin.isatty():
        raise UsageError("no text to tokenize", "give TEXT, -f FILE, or pipe text on stdin")
    return _utf8(sys.stdin.buffer.read(), "stdin")


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} is not UTF-8 text (invalid byte at offset {exc.start})", "convert it to UTF-8") from None


def _conversation(text: str | None, system: str | None, messages: str | None) -> list[dict]:
    from ..tokenizer.templates import parse_messages

    if messages:
        path = Path(messages).expanduser()
        try:
            raw = _utf8(path.read_bytes(), str(path))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "check the path given with --messages") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"{path}: invalid JSON: {exc}", "--messages takes a JSON list of {role, content}") from None
        return parse_messages(data, str(path))
    turns = [{"role": "system", "content": system}] if system is not None else []
    return turns + [{"role": "user", "content": text or ""}]








def _print(results, output: str | None, show_whitespace: bool | str, color: bool | None, compared: bool) -> None:
    """One output mode, chosen here: JSON, ids, count; else rich on a terminal (or --color), plain on a pipe."""
    from ..render import tokenize_view as view

    def header(result) -> str:
        return f"== {view.escape_controls(result.model)} ==" if compared else ""

    if output == "--json":
        data = ({"text": results[0].text, "models": [view.to_json(r) for r in results]} if compared
                else view.to_json(results[0]))
        print(json.dumps(data, indent=2, ensure_ascii=True))
    elif output in ("--ids", "--count"):
        for result in results:
            value = " ".join(str(p.id) for p in result.pieces) if output == "--ids" else str(len(result.pieces))
            print(f"{view.escape_controls(result.model)}\t{value}" if compared else value)
    elif color or sys.stdout.isatty():
        from ..render.console import make_console

        console = make_console(color=color)
        if output == "--table":
            for result in results:
                if compared:
                    console.print(header(result), style="bold")
                view.print_table(console, result)
        elif compared:
            view.print_compare(console, results, show_whitespace)
        else:
            view.print_view(console, results[0], show_whitespace)
    elif output == "--table":
        sys.stdout.write("\n".join((header(r) + "\n" if compared else "") + view.plain_table(r) for r in results))
    else:
        sys.stdout.write(view.plain_compare(results, show_whitespace) if compared
                         else view.plain_boundaries(results[0], show_whitespace))
