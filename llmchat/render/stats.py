"""The one stats line of an answer: `ask -v`, the line under each chat answer, and `/stats`."""

from __future__ import annotations

from ..engine.events import Finished
from ..sanitize import sanitize


def stats_line(finished: Finished, *, seed: int | None = None, context: tuple[int, int] | None = None,
               interrupted: bool = False, detailed: bool = False) -> str:
    """"35 prompt tokens · 30 reused · 8 generated · TTFT 0.05s · 77.8 tok/s · stop: eos (<|im_end|>)"
    (+ seed, + context used/size); `detailed` adds the prefill speed and the total time."""
    stop = "interrupted" if interrupted else finished.reason + (f" ({finished.detail})" if finished.detail else "")
    parts = [f"{finished.prompt_tokens} prompt tokens"]
    if finished.reused_tokens:
        parts.append(f"{finished.reused_tokens} reused")
    parts += [f"{finished.generated_tokens} generated", f"TTFT {finished.ttft:.2f}s"]
    if detailed:
        parts += [f"prefill {finished.prefill_tps:.0f} tok/s", f"decode {finished.decode_tps:.1f} tok/s",
                  f"total {finished.total_seconds:.2f}s"]
    else:
        parts.append(f"{finished.decode_tps:.1f} tok/s")
    parts.append(f"stop: {stop}")
    if seed is not None:
        parts.append(f"seed {seed}")
    if context:
        parts.append(f"context {context[0]}/{context[1]}")
    return sanitize(" · ".join(parts))
