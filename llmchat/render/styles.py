"""The answer views and their colours: boundaries (alternating backgrounds) and probabilities (a
perceptual scale), as rich style strings, and the one legend of the probs view."""

from __future__ import annotations

VIEWS = ("text", "tokens", "probs")  # how an answer is shown: markdown text, token boundaries, probabilities

# Pastel backgrounds with black text, cycled per token (as tiktokenizer does).
BOUNDARY_BACKGROUNDS = ("#c6e2ff", "#ffd9b3", "#c9f2c7", "#f3c6f0", "#fff3b0")

# Viridis stops (a perceptually uniform, colour-blind-safe scale): low probability is dark purple,
# high probability bright yellow-green.
_VIRIDIS = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
            (1.0, (253, 231, 37)))
PROB_BANDS = ((0.0, "<10%"), (0.1, "10–30%"), (0.3, "30–60%"), (0.6, "60–90%"), (0.9, "≥90%"))


def boundary_style(index: int) -> str:
    return f"#000000 on {BOUNDARY_BACKGROUNDS[index % len(BOUNDARY_BACKGROUNDS)]}"


def viridis(x: float) -> tuple[int, int, int]:
    x = min(1.0, max(0.0, x))
    for (x0, c0), (x1, c1) in zip(_VIRIDIS, _VIRIDIS[1:]):
        if x <= x1:
            t = (x - x0) / (x1 - x0) if x1 > x0 else 0.0
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return _VIRIDIS[-1][1]


def prob_style(prob: float) -> str:
    r, g, b = viridis(prob)
    text = "#000000" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "#ffffff"
    return f"{text} on #{r:02x}{g:02x}{b:02x}"


def legend_segments() -> list[tuple[str, str]]:
    """(label, style) pairs for the one-line legend of the probs view."""
    return [(f" {label} ", prob_style(low + 0.05 if low < 0.9 else 0.95)) for low, label in PROB_BANDS]


def token_style(view: str, event) -> str | None:
    """The style of one answer token in `view` (None: plain text)."""
    if view == "tokens":
        return boundary_style(event.index)
    if view == "probs":
        return prob_style(event.prob)
    return None


def legend_text():
    """One line: what each colour of the probs view means."""
    from rich.text import Text

    line = Text("token probability: ", style="dim")
    for label, style in legend_segments():
        line.append(label, style=style)
    return line


def write_legend(console) -> None:
    console.print(legend_text())
