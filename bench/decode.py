"""Decode and prefill speed: llmchat's engine against transformers `generate` and llama.cpp.

    python bench/decode.py [--model smollm2] [--runs 5] [--new 128] [--prompt-tokens 200]
                           [--anchor-python .venv-anchors/bin/python]

Engines, alternated within every round (a busy neighbour or a warmer cache affects all alike),
after one unmeasured warm-up round; greedy, end tokens ignored, so every run decodes --new tokens:
- llmchat, quant auto: the GGUF's own Q4_1/Q8_0 blocks on llmchat's forward (the default);
- llmchat, quant none: the same weights dequantized to float32 on llmchat's forward;
- transformers `generate`, float32 (transformers' own GGUF dequantisation and modeling code);
- llama.cpp through llama-cpp-python, on the same GGUF and token ids (when --anchor-python has it;
  `make bench-anchors` builds one), in a child process per round.
Prints medians (min–max), ratios to llama.cpp and to transformers from the same run, how often
each engine's greedy tokens equal float32's, and turn-5 time to first token with prefix reuse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from llmchat.engine.loop import PromptCache, generate  # noqa: E402
from llmchat.engine.events import Finished  # noqa: E402
from llmchat.model.files import gguf_file
from llmchat.model.load import load  # noqa: E402
from llmchat.config.registry import load_registry  # noqa: E402
from llmchat.engine.sampling import SamplingParams  # noqa: E402

TEXT = ("Large language models read text as tokens. Each step, the model looks at every token so far and "
        "produces a probability for every token in its vocabulary; a sampler then picks one. ")


def prompt_ids(model, n_tokens: int) -> list[int]:
    text = TEXT
    while len(model.tokenizer.encode(text, add_special_tokens=False)) < n_tokens:
        text += TEXT
    ids = model.tokenizer.encode(text, add_special_tokens=False)[:n_tokens - 20]
    messages = [{"role": "user", "content": model.tokenizer.decode(ids) + "\nSummarise this."}]
    return model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def run_loop(model, ids, new, k=5):
    finished, tokens = None, []
    for item in generate(model, ids, SamplingParams(temperature=0, max_new_tokens=new), alternatives=k):
        if isinstance(item, Finished):
            finished = item
        else:
            tokens.append(item.id)
    assert finished.generated_tokens == new, finished
    return dict(decode_tps=finished.decode_tps, prefill_tps=finished.prefill_tps, ttft=finished.ttft, tokens=tokens)


def run_generate(model, ids, new):
    inputs = torch.tensor([ids])
    kwargs = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.model.generate(inputs, max_new_tokens=1, min_new_tokens=1, **kwargs)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.model.generate(inputs, max_new_tokens=new, min_new_tokens=new, **kwargs)
        total = time.perf_counter() - t0
    tokens = out[0][len(ids):].tolist()
    return dict(decode_tps=(new - 1) / (total - ttft), prefill_tps=len(ids) / ttft, ttft=ttft, tokens=tokens)


def run_anchor(python: str, gguf: Path, ids, new):
    argv = [python, str(ROOT / "bench" / "anchor_llamacpp.py"), str(gguf), json.dumps(ids), str(new),
            str(torch.get_num_threads())]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"llama.cpp anchor failed: {proc.stderr[-400:]}")
    return json.loads(proc.stdout)


def turn5_ttft(model, reuse: bool) -> float:
    cache, messages, ttft = PromptCache(), [], 0.0
    for turn in range(5):
        messages.append({"role": "user", "content": f"Question {turn + 1}: " + TEXT})
        ids = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        answer = []
        for item in generate(model, ids, SamplingParams(temperature=0, max_new_tokens=40), cache=cache if reuse else None):
            if isinstance(item, Finished):
                ttft = item.ttft
            else:
                answer.append(item.text)
        messages.append({"role": "assistant", "content": "".join(answer)})
    return ttft


def fmt(values, digits=1):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--anchor-python", default=os.environ.get("LLMCHAT_ANCHOR_PYTHON", str(ROOT / ".venv-anchors/bin/python")))
    args = parser.parse_args()
    spec = load_registry().get(args.model)
    fast = load(spec, device="cpu")
    exact = load(spec, device="cpu", quant="none", dtype="float32")
    reference = load(spec, device="cpu", dtype="float32", backend="transformers")
    fast, exact = (dataclasses.replace(m, eos_ids=()) for m in (fast, exact))
    ids = prompt_ids(fast, args.prompt_tokens)
    engines = {
        f"llmchat, quant auto ({fast.quant})": lambda: run_loop(fast, ids, args.new),
        "llmchat, quant none (float32)": lambda: run_loop(exact, ids, args.new),
        "transformers generate (float32)": lambda: run_generate(reference, ids, args.new),
    }
    anchor = Path(args.anchor_python)
    if spec.source in ("gguf", "package") and anchor.is_file() and \
            subprocess.run([str(anchor), "-c", "import llama_cpp"], capture_output=True).returncode == 0:
        engines["llama.cpp (llama-cpp-python)"] = lambda: run_anchor(str(anchor), gguf_file(spec), ids, args.new)
    else:
        print(f"(llama.cpp anchor skipped: no llama-cpp-python at {anchor}; run `make bench-anchors`)")
    print(f"model {spec.alias}, {torch.get_num_threads()} threads, prompt {len(ids)} tokens, {args.new} new tokens, "
          f"{args.runs} alternating rounds after a warm-up round, {time.strftime('%Y-%m-%d')}")
    for run in engines.values():
        run()
    results: dict[str, list[dict]] = {name: [] for name in engines}
    for _ in range(args.runs):
        for name, run in engines.items():
            results[name].append(run())
    base = results["llmchat, quant none (float32)"][0]["tokens"]
    anchor_name = next((n for n in engines if n.startswith("llama.cpp")), None)
    med = {name: statistics.median(r["decode_tps"] for r in rows) for name, rows in results.items()}
    pre = {name: statistics.median(r["prefill_tps"] for r in rows) for name, rows in results.items()}
    print("\n| engine | decode tok/s | prefill tok/s | TTFT ms | decode × llama.cpp | prefill × llama.cpp | greedy = fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in results.items():
        same = next((i for i, (a, b) in enumerate(zip(rows[0]["tokens"], base)) if a != b), len(base))
        ratio = f"{med[name] / med[anchor_name]:.2f}" if anchor_name else "–"
        pratio = f"{pre[name] / pre[anchor_name]:.2f}" if anchor_name else "–"
        print(f"| {name} | {fmt([r['decode_tps'] for r in rows])} | {fmt([r['prefill_tps'] for r in rows], 0)} | "
              f"{fmt([1000 * r['ttft'] for r in rows], 0)} | {ratio} | {pratio} | {same}/{len(base)} tokens |")
    name = next(iter(engines))
    print(f"\ndecode ratio llmchat(auto) / transformers generate: {med[name] / med['transformers generate (float32)']:.2f}")
    with_reuse, without = [], []
    for _ in range(3):
        with_reuse.append(turn5_ttft(fast, True))
        without.append(turn5_ttft(fast, False))
    print(f"turn-5 TTFT (llmchat auto): with prefix reuse {fmt([1000 * t for t in with_reuse], 0)} ms, "
          f"without {fmt([1000 * t for t in without], 0)} ms")


if __name__ == "__main__":
    main()
