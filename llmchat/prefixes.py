"""Two prefix questions the streaming code asks: how long a prefix two sequences share (KV-cache
reuse, the detokenizer's window), and how much of a text's end could still become a marker
(stop strings, think markers), so that it is held back until the next piece decides."""

from __future__ import annotations

from typing import Iterable, Sequence


def common_prefix(a: Sequence, b: Sequence) -> int:
    """The length of the longest common prefix of `a` and `b`."""
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def partial_suffix(text: str, markers: Iterable[str]) -> int:
    """The length of the longest end of `text` that is a proper prefix of one of `markers`."""
    return max((n for marker in markers for n in range(min(len(marker) - 1, len(text)), 0, -1)
                if text.endswith(marker[:n])), default=0)
