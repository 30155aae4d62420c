"""Split a stream of answer text into the reasoning ("thinking") and the answer proper.

R1-style models write <think> … </think> before the answer; their chat template often opens the
block itself, so the stream may start inside it. Markers may arrive split across deltas, so a
possible partial marker at the end of a delta is held back until the next one decides it.

One splitter per answer, fed once: the chat session and `ask` split here, and renderers receive
the (channel, text) pieces; `answer_text` / `thinking_text` are what was split so far.
"""

from __future__ import annotations

from ..prefixes import partial_suffix

THINK, ANSWER = "thinking", "answer"


class ThinkSplitter:
    def __init__(self, open_marker: str | None, close_marker: str | None, starts_thinking: bool = False):
        self.open, self.close = open_marker, close_marker
        self.channel = THINK if (starts_thinking and open_marker) else ANSWER
        self._held = ""
        self._strip_newlines = False  # the answer after </think> starts after its blank line
        self.seen_think = self.channel == THINK
        self._parts: dict[str, list[str]] = {THINK: [], ANSWER: []}

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Returns [(channel, text), …] for this delta (possibly empty)."""
        if not self.open:
            if text:
                self._parts[ANSWER].append(text)
            return [(ANSWER, text)] if text else []
        buf, out = self._held + text, []
        self._held = ""
        while buf:
            marker = self.close if self.channel == THINK else self.open
            at = buf.find(marker)
            if at >= 0:
                self._emit(out, buf[:at])
                buf = buf[at + len(marker):]
                self.channel = ANSWER if self.channel == THINK else THINK
                self.seen_think = True
                self._strip_newlines = self.channel == ANSWER
                continue
            keep = partial_suffix(buf, (marker,))
            self._emit(out, buf[:len(buf) - keep])
            self._held = buf[len(buf) - keep:]
            break
        return out

    def _emit(self, out: list, text: str) -> None:
        if self._strip_newlines and self.channel == ANSWER:
            text = text.lstrip("\n")
            self._strip_newlines = not text
        if text:
            out.append((self.channel, text))
            self._parts[self.channel].append(text)

    def finish(self) -> list[tuple[str, str]]:
        held, self._held, out = self._held, "", []
        self._emit(out, held)
        return out

    @property
    def answer_text(self) -> str:
        return "".join(self._parts[ANSWER])

    @property
    def thinking_text(self) -> str:
        return "".join(self._parts[THINK])
