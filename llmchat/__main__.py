"""The `llmchat` command (and `python -m llmchat`): `tokenize --count` without typer, everything else through it.

`llmchat tokenize --count TEXT` is what scripts call in a loop (how long is this prompt?), so its
start-up is its speed. The typer CLI costs ~150 ms of imports before a command runs (typer and
click ~90 ms, every command's module); a bare python reading tokenizer.json and encoding takes
~165 ms here. So the plain form — `tokenize --count` with at most -m/--model MODEL, -f/--file FILE
(not stdin) and one TEXT, a local model whose tokenizer is already extracted — is answered here
with the same functions the command uses (registry, tokenizer folder, ModelTokenizer.encode), and
anything else, or any doubt (an error, a first use that must extract, a remote model), goes to
the full CLI, which gives its usual output and one-line errors. Same count either way (tested).
"""

from __future__ import annotations

import sys


def _plain_count(args: list[str]) -> tuple[str | None, str | None, str | None] | None:
    """(model, file, text) when `args` is `tokenize` + `--count` in the plain form, else None."""
    if len(args) < 2 or args[0] != "tokenize":
        return None
    model = file = text = None
    count, rest = False, args[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--count" and not count:
            count = True
        elif arg in ("-m", "--model", "-f", "--file") and i + 1 < len(rest):
            value = rest[i + 1]
            if arg in ("-m", "--model"):
                if model is not None:
                    return None
                model = value
            else:
                if file is not None or value == "-":
                    return None
                file = value
            i += 1
        elif arg.startswith("--model="):
            if model is not None:
                return None
            model = arg[len("--model="):]
        elif arg.startswith("-") and arg != "-":
            return None  # another option (or a text that looks like one): the CLI decides
        else:
            if text is not None:
                return None
            text = arg
        i += 1
    if not count or (text is None) == (file is None):
        return None
    return model, file, text


def fast_count(args: list[str]) -> int | None:
    """The token count for a plain `tokenize --count`, or None to leave it to the full CLI."""
    plain = _plain_count(args)
    if plain is None:
        return None
    model, file, text = plain
    try:
        from pathlib import Path

        from .config.registry import load_registry
        from .model.gguf.convert import gguf_file, gguf_tokenizer_cached

        from .model.files import tokenizer_folder

        spec = load_registry(None).get(model)
        if spec.source in ("gguf", "package"):
            if not gguf_tokenizer_cached(gguf_file(spec)):
                return None  # first use: the CLI extracts it, with its progress line
        elif spec.source != "path":
            return None  # a repo id (the hub cache, maybe a download) or a remote engine
        folder = tokenizer_folder(spec, check=False)
        if file is not None:
            text = Path(file).expanduser().read_bytes().decode("utf-8")
        from .tokenizer.pieces import open_tokenizer

        return len(open_tokenizer(folder, spec.context).encode(text, special=False))
    except Exception:  # any doubt: the full CLI says what is wrong, in its words
        return None


def main() -> None:
    count = fast_count(sys.argv[1:])
    if count is None:
        from .cli import main as cli_main

        cli_main()
        return
    try:
        print(count, flush=True)
    except BrokenPipeError:  # the reader went away (`| head`): done, quietly, as the CLI does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


if __name__ == "__main__":  # python -m llmchat
    main()
