"""Make untrusted text (model output, token pieces, file contents) safe for a terminal.

Only newline and tab pass through. Every other C0 control character, DEL and every C1 control
character is replaced by a visible stand-in: ESC becomes "␛" (so "\\x1b[2J" prints as "␛[2J"),
carriage return "␍", backspace "␈", BEL "␇" (the Unicode control pictures), DEL "␡", and C1
characters "⟨9B⟩". Because each character is mapped on its own, the function is stateless and
works on a stream: an escape sequence split across two tokens is neutralised the same as a whole
one, and text after an unterminated sequence is never swallowed. Saved files and JSON keep the
exact text; only what reaches a terminal passes through here.
"""

from __future__ import annotations

_TABLE: dict[int, str] = {}
for _code in range(0x20):
    if _code not in (0x09, 0x0A):
        _TABLE[_code] = chr(0x2400 + _code)
_TABLE[0x7F] = "\u2421"
for _code in range(0x80, 0xA0):
    _TABLE[_code] = f"\u27e8{_code:02X}\u27e9"


def sanitize(text: str) -> str:
    """The text with every control character except newline and tab made visible."""
    return text.translate(_TABLE)


def has_control(text: str) -> bool:
    return any(ord(ch) in _TABLE for ch in text)
