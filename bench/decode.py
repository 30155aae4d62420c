"""llmchat's decode loop vs transformers `model.generate`, side by side in one process.

    python bench/decode.py [--model smollm2] [--dtype auto|float32|bfloat16] [--runs 5] [--new 128]

Alternates A/B runs on the same prompt (~200 tokens) and settings (greedy, 128 new tokens, end
tokens ignored so every run decodes the same count), then prints medians (min–max) and ratios:
- decode tokens/s, prefill tokens/s, time to first token;
- the cost of probabilities + top-5 alternatives (loop with K=5 vs K=0);
- time to first token of turn 5 of a chat, with and without prefix reuse.
Peak RSS is the process's high-water mark (both engines share the process and the weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from llmchat.engine import PromptCache, generate  # noqa: E402
from llmchat.events import Finished  # noqa: E402
from llmchat.loading import load  # noqa: E402
from llmchat.registry import load_registry  # noqa: E402
from llmchat.sampling import SamplingParams  # noqa: E402

TEXT = ("Large language models read text as tokens. Each step, the model looks at every token so far and "
        "produces a probability for every token in its vocabulary; a sampler then picks one. ")


def prompt_ids(model, n_tokens: int) -> list[int]:
    text = TEXT
    while len(model.tokenizer.encode(text, add_special_tokens=False)) < n_tokens:
        text += TEXT
    ids = model.tokenizer.encode(text, add_special_tokens=False)[:n_tokens - 20]
    messages = [{"role": "user", "content": model.tokenizer.decode(ids) + "\nSummarise this."}]
    return model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)


def run_loop(model, ids, new, k):
    params = SamplingParams(temperature=0, max_new_tokens=new)
    finished = None
    for item in generate(model, ids, params, alternatives=k):
        if isinstance(item, Finished):
            finished = item
    assert finished.generated_tokens == new, finished
    return finished.decode_tps, finished.prefill_tps, finished.ttft


def run_generate(model, ids, new):
    inputs = torch.tensor([ids], device=model.model.device)
    kwargs = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.model.generate(inputs, max_new_tokens=1, min_new_tokens=1, **kwargs)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.model.generate(inputs, max_new_tokens=new, min_new_tokens=new, **kwargs)
        total = time.perf_counter() - t0
    assert out.shape[1] - len(ids) == new
    return (new - 1) / (total - ttft), len(ids) / ttft, ttft


def turn5_ttft(model, reuse: bool) -> float:
    cache = PromptCache()
    messages = []
    ttft = 0.0
    for turn in range(5):
        messages.append({"role": "user", "content": f"Question {turn + 1}: " + TEXT})
        ids = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
        answer = []
        for item in generate(model, ids, SamplingParams(temperature=0, max_new_tokens=40), cache=cache if reuse else None):
            if isinstance(item, Finished):
                ttft = item.ttft
            else:
                answer.append(item.text)
        messages.append({"role": "assistant", "content": "".join(answer)})
    return ttft


def fmt(values, unit=""):
    return f"{statistics.median(values):8.2f}{unit} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    args = parser.parse_args()
    model = load(load_registry().get(args.model), dtype=args.dtype, device="cpu")
    model = dataclasses.replace(model, eos_ids=())  # decode exactly --new tokens every run
    ids = prompt_ids(model, args.prompt_tokens)
    print(f"model {model.spec.alias}, dtype {str(model.dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads, "
          f"prompt {len(ids)} tokens, {args.new} new tokens, {args.runs} alternating runs")
    results = {"llmchat K=5": [], "llmchat K=0": [], "transformers generate": []}
    run_loop(model, ids, 8, 5)  # warm-up
    run_generate(model, ids, 8)
    for _ in range(args.runs):
        results["llmchat K=5"].append(run_loop(model, ids, args.new, 5))
        results["transformers generate"].append(run_generate(model, ids, args.new))
        results["llmchat K=0"].append(run_loop(model, ids, args.new, 0))
    print(f"\n| engine | decode tok/s | prefill tok/s | TTFT s |\n| --- | --- | --- | --- |")
    for name, rows in results.items():
        d, p, t = zip(*rows)
        print(f"| {name} | {fmt(d)} | {fmt(p)} | {fmt(t)} |")
    med = {name: statistics.median(r[0] for r in rows) for name, rows in results.items()}
    print(f"\ndecode ratio llmchat(K=5) / generate: {med['llmchat K=5'] / med['transformers generate']:.2f}")
    print(f"decode ratio llmchat(K=0) / generate: {med['llmchat K=0'] / med['transformers generate']:.2f}")
    print(f"cost of probabilities + top-5 alternatives: {100 * (1 - med['llmchat K=5'] / med['llmchat K=0']):+.1f}% decode time")
    with_reuse, without = [], []
    for _ in range(max(3, args.runs // 2)):
        with_reuse.append(turn5_ttft(model, True))
        without.append(turn5_ttft(model, False))
    print(f"turn-5 TTFT: with prefix reuse {fmt(with_reuse, ' s')}, without {fmt(without, ' s')}, "
          f"ratio {statistics.median(without) / statistics.median(with_reuse):.1f}x")
    print(f"peak RSS (whole process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
