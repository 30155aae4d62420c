"""The typer CLI. `main()` is the only place that maps errors to exit codes.

Each command lives in its own module and registers itself on `app`; commands import torch
lazily, so `llmchat --help`, `--version`, `models` and `tokenize` stay fast.
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer (0.28, pinned: 0.29 adds pydantic and ~100 ms per run) vendors click; its usage errors live here
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typers run on click itself
    from click import exceptions as click_exceptions

from .. import __version__
from ..errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, Interrupted, LlmchatError, OutputClosed
from .common import State

app = typer.Typer(
    name="llmchat",
    help="Chat with local open-weights language models and see their tokens and probabilities.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


def _version(value: bool) -> None:
    if value:
        print(f"llmchat {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    models: str = typer.Option(None, "--models", metavar="PATH", help="Extra models.toml merged over the others."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = State(models_path=models, debug=debug)


from . import models_cmd  # noqa: E402,F401  (registers commands)
from . import tokenize_cmd  # noqa
from . import ask_cmd, chat_cmd, next_cmd, score_cmd, serve_cmd  # noqa: E402,F401


SHORT_HELP = {
    "tokenize": "How a model's tokenizer cuts a text into tokens (no model is loaded).",
    "ask": "Answer one prompt: the answer on stdout, for scripts and pipes.",
    "chat": "Talk to a model; see its tokens, probabilities and alternatives.",
    "next": "The model's distribution over the next token.",
    "score": "How surprising a text is to the model, token by token.",
    "serve": "Keep a model loaded for ask, or serve an OpenAI-compatible HTTP API.",
}
EXAMPLES = {
    "tokenize": ['llmchat tokenize "How many r\'s are in strawberry?"', 'llmchat tokenize --chat -s "Be brief." "Hi"',
                 "llmchat tokenize --compare smollm2,llama-3.2-1b-instruct -f text.txt"],
    "ask": ['llmchat ask "What is the capital of France?" -t 0', 'cat notes.md | llmchat ask "Summarise this."',
            'llmchat ask --json --logprobs 3 "Who won the 2031 Nobel Prize?"'],
    "chat": ["llmchat chat", "llmchat chat --view probs -t 0", "llmchat chat --continue"],
    "next": ['llmchat next "The capital of France is"', 'llmchat next --chat "What is 2+2?" --after "The answer is" -k 5'],
    "score": ['llmchat score "The capital of France is Berlin."',
              'llmchat score --chat --prompt "What is the capital of France?" "Paris." --table'],
    "serve": ["llmchat serve &", "llmchat serve --http 8080", "llmchat serve status"],
}
PLACEHOLDERS = {str: "TEXT", int: "N", float: "X"}


def _polish_help(typer_app: typer.Typer) -> None:
    """One style of help: a short line per command in the list, the same placeholders (TEXT, N, X)
    for every typed option, and examples at the end of each command's help."""
    import inspect
    import typing

    from typer.models import ArgumentInfo, OptionInfo

    core = getattr(typer, "core", None)
    if core is not None and hasattr(core, "TyperArgument"):  # "PROMPT <str>" → "PROMPT": the metavar says it
        core.TyperArgument.display_type_rich = lambda self, ctx: None

    for info in typer_app.registered_commands:
        name = info.name or info.callback.__name__
        info.short_help = info.short_help or SHORT_HELP.get(name)
        if name in EXAMPLES and not info.epilog:
            info.epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        hints = typing.get_type_hints(info.callback)
        for param in inspect.signature(info.callback).parameters.values():
            default = param.default
            if not isinstance(default, (OptionInfo, ArgumentInfo)) or default.metavar:
                continue
            kind = hints.get(param.name)
            args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
            inner = typing.get_args(args[0]) or args
            if isinstance(default, ArgumentInfo):
                default.metavar = param.name.upper()
            elif inner[0] in PLACEHOLDERS:
                default.metavar = PLACEHOLDERS[inner[0]]
    for group in typer_app.registered_groups:
        _polish_help(group.typer_instance)


def _guard_commands(typer_app: typer.Typer) -> None:
    """Translate two exceptions inside a command before typer sees them: BrokenPipeError (click
    would make it a bare exit 1) and KeyboardInterrupt (typer would make it a silent exit 130)."""
    import functools

    def wrap(callback):
        @functools.wraps(callback)
        def guarded(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except BrokenPipeError:
                raise OutputClosed() from None
            except KeyboardInterrupt:
                raise Interrupted("interrupted") from None
        return guarded

    for info in typer_app.registered_commands:
        info.callback = wrap(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance.registered_callback:
            group.typer_instance.registered_callback.callback = wrap(group.typer_instance.registered_callback.callback)
        _guard_commands(group.typer_instance)


_polish_help(app)
_guard_commands(app)


GLOBAL_FLAGS, GLOBAL_VALUES = ("--debug",), ("--models",)


def hoist_global_options(args: list[str]) -> list[str]:
    """`--debug` and `--models PATH` work after the subcommand too (`llmchat ask … --debug`):
    they are moved in front of it. Nothing after a `--` moves."""
    front, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_FLAGS:
            front.append(arg)
        elif arg in GLOBAL_VALUES and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 1
        elif arg.split("=", 1)[0] in GLOBAL_VALUES and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> None:
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in (args[:args.index("--")] if "--" in args else args)
    try:
        result = app(args=args, prog_name="llmchat", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except LlmchatError as exc:
        code = _fail(exc.one_line(), exc.exit_code, debug)
    except click_exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message())
        code = 0
    except click_exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "llmchat"
        code = _fail(f"{exc.format_message()} — see `{command} --help`", EXIT_USAGE, debug)
    except typer.Exit as exc:
        code = exc.exit_code
        if code == EXIT_INTERRUPTED:  # typer's translation of a KeyboardInterrupt outside a command
            _fail("interrupted", code, debug)
    except (KeyboardInterrupt, typer.Abort):
        code = _fail("interrupted", EXIT_INTERRUPTED, debug)
    except (BrokenPipeError, OutputClosed):
        code = _broken_pipe()
    except Exception as exc:  # a bug: one line unless --debug
        code = _fail(f"internal error: {type(exc).__name__}: {exc} — run again with --debug for the traceback",
                     EXIT_RUNTIME, debug)
    _flush_or_quiet()
    sys.exit(code)


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    print(f"llmchat: error: {message}" if code != EXIT_INTERRUPTED else "llmchat: interrupted", file=sys.stderr)
    return code


BROKEN_PIPE_EXIT = 0


def _broken_pipe() -> int:
    """The reader closed the pipe (`| head`): stop quietly. Exit 0, like `yes | head`-style tools
    that treat a closed reader as done (documented in the README)."""
    _quiet_stdout()
    return BROKEN_PIPE_EXIT


def _quiet_stdout() -> None:
    # Point stdout at /dev/null so that the interpreter's final flush cannot raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _flush_or_quiet() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
