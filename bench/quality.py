"""What each GGUF format costs in quality on llmchat's kernel: the file's blocks (int8 activations)
against the same file dequantized to float32, both on llmchat's forward.

    python bench/quality.py [--formats Q4_0,Q4_1,...]      (after bench/scale.py made the files)

For each 135M file: the first greedy token (of 32) where the two differ, and the mean NLL on a
fixed text (tests/data/fixed_text.md, the opening of README.md as of 2026-12-04, which tests/test_fast.py
reads too; kept apart so that README edits do not move the figures) of each, with the relative difference: as a
prompt runs (two int8 passes, the default) and with one pass (prompt_passes = 1 / LLMCHAT_PROMPT_PASSES=1, the
arithmetic of each generated token but down_proj's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from llmchat.config.registry import load_registry  # noqa: E402
from llmchat.engine.events import Finished  # noqa: E402
from llmchat.engine.loop import generate  # noqa: E402
from llmchat.engine.sampling import SamplingParams  # noqa: E402
from llmchat.model.load import load  # noqa: E402
from scale import DEFAULT_FORMATS, bench_dir, default_gguf  # noqa: E402

TEXT = (ROOT / "tests" / "data" / "fixed_text.md").read_text(encoding="utf-8")


def nll(loaded, ids) -> float:
    logits = loaded.model(input_ids=torch.tensor([ids]), cache=None, use_cache=False).logits[0].float()
    return float(-torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None]).mean())


def greedy(loaded, ids, n=32):
    return [e.id for e in generate(loaded, ids, SamplingParams(temperature=0, max_new_tokens=n)) if not isinstance(e, Finished)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS["135m"]))
    args = parser.parse_args()
    registry = load_registry()
    print("| 135M format | weights | greedy = float32 | NLL two passes | NLL one pass | NLL float32 | two passes | one pass |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for fmt in args.formats.split(","):
        path = default_gguf() if fmt == "Q4_1" else bench_dir() / f"smollm2-135m-{fmt}.gguf"
        if not path.is_file():
            print(f"| {fmt} | (missing: run bench/scale.py first) | | | | |")
            continue
        spec = registry.get(str(path))
        fast, exact = load(spec, device="cpu"), load(spec, device="cpu", quant="none", dtype="float32")
        ids = fast.tokenizer.encode(TEXT)[:600]
        prompt = fast.tokenizer.apply_chat_template([{"role": "user", "content": "Write a short poem about the sea."}],
                                                    add_generation_prompt=True)
        a, b = greedy(fast, prompt), greedy(exact, prompt)
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        q, f = nll(fast, ids), nll(exact, ids)
        fast.model.prompt_passes = 1  # the decode path's arithmetic: one int8 pass (two for down_proj)
        try:
            one = nll(fast, ids)
        finally:
            fast.model.prompt_passes = 2
        print(f"| {fmt} | {fast.quant} | {same}/{len(b)} | {q:.4f} | {one:.4f} | {f:.4f} | {100 * (q - f) / f:+.2f}% | "
              f"{100 * (one - f) / f:+.2f}% |", flush=True)


if __name__ == "__main__":
    main()
