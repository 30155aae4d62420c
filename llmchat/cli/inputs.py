"""Reading prompts: argument, stdin, files. Bytes are decoded strictly (or with replacement)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError

MAX_INPUT_BYTES = 64 * 1024 * 1024


def decode_bytes(data: bytes, source: str, errors: str) -> str:
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                         "fix the input encoding or pass --input-errors replace") from None


def read_stdin(errors: str) -> str:
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError("stdin is larger than 64 MiB", "give a smaller input")
    return decode_bytes(data, "stdin", errors)


def read_file(path: str, errors: str) -> str:
    try:
        p = Path(path).expanduser()
        if p.stat().st_size > MAX_INPUT_BYTES:
            raise UsageError(f"{path} is larger than 64 MiB", "give a smaller file")
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "check the path and permissions") from None
    return decode_bytes(data, path, errors)


def gather_prompt(prompt: str | None, files: list[str], errors: str, *, stdin_is_tty: bool | None = None) -> str:
    """stdin (when piped, or when the prompt is "-") first, then the argument, then -f files,
    separated by blank lines. Raises "no prompt" when all are empty."""
    tty = sys.stdin.isatty() if stdin_is_tty is None else stdin_is_tty
    parts: list[str] = []
    if prompt == "-" or (not tty and prompt != "-"):
        stdin_text = read_stdin(errors)
        if stdin_text.strip():
            parts.append(stdin_text.rstrip("\n"))
    if prompt and prompt != "-":
        parts.append(prompt)
    for path in files:
        parts.append(read_file(path, errors).rstrip("\n"))
    text = "\n\n".join(parts)
    if not text.strip():
        raise UsageError("no prompt", "give it as an argument, on stdin, or with -f FILE")
    return text
