"""The answer views and their colours: boundaries (alternating backgrounds) and probabilities (a
perceptual scale), as rich style strings, and the one legend of the probs view.

Colours are chosen per colour system (rich's "truecolor", "256", "standard"/"windows"): on a
truecolor terminal probabilities follow viridis continuously; on 256 or 16 colours each legend band
has its own colour (a downsampled viridis maps 10–60% onto one entry of the 256-colour cube). A
console without colour (NO_COLOR, TERM=dumb) gets text markers instead: `|` between tokens, and
`[p%]` after each token the model gave less than half its probability.
"""

from __future__ import annotations

VIEWS = ("text", "tokens", "probs")  # how an answer is shown: markdown text, token boundaries, probabilities

# Pastel backgrounds with black text, cycled per token (as tiktokenizer does).
BOUNDARY_BACKGROUNDS = ("#c6e2ff", "#ffd9b3", "#c9f2c7", "#f3c6f0", "#fff3b0")

# Viridis stops (a perceptually uniform, colour-blind-safe scale): low probability is dark purple,
# high probability bright yellow-green.
_VIRIDIS = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
            (1.0, (253, 231, 37)))
PROB_BANDS = ((0.0, "<10%"), (0.1, "10–30%"), (0.3, "30–60%"), (0.6, "60–90%"), (0.9, "≥90%"))


BOUNDARY_16 = ("black on bright_cyan", "black on bright_yellow", "black on bright_green", "black on bright_magenta")
# One colour per PROB_BANDS entry where colours are few: viridis at the bands' middles, picked by hand
# from the xterm 256-colour cube so that no two coincide, and the nearest of the 16 ANSI colours.
PROB_256 = ("#ffffff on color(54)", "#ffffff on color(61)", "#ffffff on color(30)", "#000000 on color(71)",
            "#000000 on color(184)")
PROB_16 = ("bright_white on magenta", "bright_white on blue", "black on cyan", "black on green", "black on yellow")
MARK_BELOW = 0.5  # without colour, tokens under this probability get an inline [p%]


def colour_system(console) -> str | None:
    """The console's colour system, None when it shows no colour."""
    return None if console.no_color or console.color_system is None else str(console.color_system)


def boundary_style(index: int, system: str | None = "truecolor") -> str:
    if system in ("standard", "windows"):
        return BOUNDARY_16[index % len(BOUNDARY_16)]
    return f"#000000 on {BOUNDARY_BACKGROUNDS[index % len(BOUNDARY_BACKGROUNDS)]}"


def band(prob: float) -> int:
    """The index of the PROB_BANDS entry a probability falls in."""
    return max(i for i, (low, _) in enumerate(PROB_BANDS) if prob >= low) if prob >= 0 else 0


def viridis(x: float) -> tuple[int, int, int]:
    x = min(1.0, max(0.0, x))
    for (x0, c0), (x1, c1) in zip(_VIRIDIS, _VIRIDIS[1:]):
        if x <= x1:
            t = (x - x0) / (x1 - x0) if x1 > x0 else 0.0
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return _VIRIDIS[-1][1]


def prob_style(prob: float, system: str | None = "truecolor") -> str:
    if system == "256":
        return PROB_256[band(prob)]
    if system in ("standard", "windows"):
        return PROB_16[band(prob)]
    r, g, b = viridis(prob)
    text = "#000000" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "#ffffff"
    return f"{text} on #{r:02x}{g:02x}{b:02x}"


def legend_segments(system: str | None = "truecolor") -> list[tuple[str, str]]:
    """(label, style) pairs for the one-line legend of the probs view."""
    return [(f" {label} ", prob_style(low + 0.05 if low < 0.9 else 0.95, system)) for low, label in PROB_BANDS]


def token_style(view: str, event, system: str | None = "truecolor") -> str | None:
    """The style of one answer token in `view` (None: plain text)."""
    if system is None:
        return None
    if view == "tokens":
        return boundary_style(event.index, system)
    if view == "probs":
        return prob_style(event.prob, system)
    return None


def plain_marks(view: str, event) -> tuple[str, str]:
    """What a console without colour writes before and after a token in `view`."""
    if view == "tokens" and event.index > 0:
        return "|", ""
    if view == "probs" and event.prob < MARK_BELOW:
        return "", f"[{100 * event.prob:.0f}%]"
    return "", ""


def mark_pieces(view: str, event, pieces: list[tuple[str, str]], channel: str = "answer") -> list[tuple[str, str]]:
    """The (channel, text) pieces of one token with its plain marks around its answer text."""
    before, after = plain_marks(view, event)
    answer = [i for i, (c, _) in enumerate(pieces) if c == channel]
    if not answer or not (before or after):
        return pieces
    out = list(pieces)
    first, last = answer[0], answer[-1]
    out[first] = (channel, before + out[first][1])
    out[last] = (channel, out[last][1] + after)
    return out


def legend_text(system: str | None = "truecolor"):
    """One line: what each colour of the probs view means (in words without colour)."""
    from rich.text import Text

    if system is None:
        return Text(f"token probability: [p%] follows each token the model gave less than {100 * MARK_BELOW:.0f}%")
    line = Text()
    line.append("token probability: ", style="dim")  # dim the words only, not the swatches
    for label, style in legend_segments(system):
        line.append(label, style=style)
    return line


def write_legend(console) -> None:
    console.print(legend_text(colour_system(console)))
