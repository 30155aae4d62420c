"""Stop strings: text that could be the start of one is held back until the next token decides."""

from __future__ import annotations

from dataclasses import replace

from ..prefixes import partial_suffix
from .events import TokenEvent


class StopReleaser:
    """Holds back events whose text could be the start of a stop string.

    Text is released only once it cannot be part of a stop-string match; a match cuts the text
    before the stop string (the event it starts in keeps only the part before it) and drops the
    rest. Without stop strings, events pass straight through, except while the detokenizer
    waits for the rest of a character.
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.pending: list[TokenEvent] = []

    def add(self, event: TokenEvent, holding: bool = False) -> tuple[list[TokenEvent], str | None]:
        self.pending.append(event)
        text = "".join(e.text for e in self.pending)
        best = None
        for stop in self.stops:
            at = text.find(stop)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is not None:
            return self._cut(best[0]), best[1]
        if holding:
            return [], None
        return self._release_upto(len(text) - partial_suffix(text, self.stops)), None

    def _release_upto(self, limit: int) -> list[TokenEvent]:
        out, used = [], 0
        while self.pending and used + len(self.pending[0].text) <= limit:
            used += len(self.pending[0].text)
            out.append(self.pending.pop(0))
        return out

    def _cut(self, at: int) -> list[TokenEvent]:
        out, used = [], 0
        for event in self.pending:
            if used + len(event.text) <= at:
                out.append(event)
                used += len(event.text)
                continue
            if at > used:
                out.append(replace(event, text=event.text[:at - used]))
            break
        self.pending = []
        return out

    def finish(self, leftover: str) -> list[TokenEvent]:
        out, self.pending = self.pending, []
        if leftover and out:
            out[-1] = replace(out[-1], text=out[-1].text + leftover)
        return out
