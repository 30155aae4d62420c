"""Reading prompts: argument, stdin, files. Bytes are decoded strictly (or with replacement)."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
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


def caller_reads_stdin() -> bool:
    """True when the process that started us reads the same pipe as our stdin: a shell loop such
    as `printf 'a\\nb\\n' | while read l; do llmchat ask "$l"; done`, whose remaining lines are not
    ours to take. Linux only (/proc); elsewhere False."""
    try:
        mine = os.fstat(0)
        theirs = os.stat(f"/proc/{os.getppid()}/fd/0")
    except OSError:
        return False
    return stat.S_ISFIFO(mine.st_mode) and (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


@dataclass(frozen=True)
class PromptParts:
    """The prompt as given: documents (stdin, then each -f file) and the argument after them."""

    documents: str
    question: str
    SEPARATOR = "\n\n"

    @property
    def text(self) -> str:
        return self.SEPARATOR.join(part for part in (self.documents, self.question) if part)

    @property
    def keep(self) -> int:
        """Characters at the end of `text` that --truncate must never cut: the question."""
        return len(self.SEPARATOR + self.question) if self.documents and self.question else 0


def gather_parts(prompt: str | None, files: list[str], errors: str, *, stdin_is_tty: bool | None = None,
                 has_files: bool = True) -> PromptParts:
    """Piped stdin first, then each -f file, then the argument: the instruction comes after the
    documents, as in `cat file | llmchat ask "Summarise it."`. stdin is read when the argument is
    `-`, or when it is not a terminal and the caller does not read it too (a `while read` loop:
    see `caller_reads_stdin`); with no argument and no files it is always read."""
    tty = sys.stdin.isatty() if stdin_is_tty is None else stdin_is_tty
    documents: list[str] = []
    given = bool(prompt and prompt != "-") or bool(files)
    if prompt == "-" or (not tty and not (given and caller_reads_stdin())):
        stdin_text = read_stdin(errors)
        if stdin_text.strip():
            documents.append(stdin_text.rstrip("\n"))
    for path in files:
        documents.append(read_file(path, errors).rstrip("\n"))
    parts = PromptParts("\n\n".join(documents), prompt if prompt and prompt != "-" else "")
    if not parts.text.strip():
        raise UsageError("no prompt", "give it as an argument, on stdin, or with -f FILE" if has_files
                         else "give it as an argument or on stdin")
    return parts


def gather_prompt(prompt: str | None, files: list[str], errors: str, *, stdin_is_tty: bool | None = None,
                  has_files: bool = True) -> str:
    return gather_parts(prompt, files, errors, stdin_is_tty=stdin_is_tty, has_files=has_files).text
