"""Speed at the sizes people run: llmchat against llama.cpp on Q4_0 … Q8_0 GGUFs at 135M, ~0.4B, ~1B.

    python bench/scale.py [--sizes 135m,0.4b,1b] [--formats Q4_0,Q8_0,...] [--runs 3] [--new 64]
                          [--prompt-tokens 200] [--anchor-python .venv-anchors/bin/python]
    make bench-scale

The files are made from what is on disk, once, into $XDG_CACHE_HOME/llmchat/bench/:
- 135M: the default SmolLM2 GGUF re-quantized to each format by llama.cpp's own quantizer
  (`llama_model_quantize`, allow_requantize) through the anchor venv (`make bench-anchors`);
- ~0.4B and ~1B: random-weight Llamas (std 0.02) written in F16 by gguf-py's GGUFWriter with
  SmolLM2's tokenizer keys, then quantized the same way. ~1B is Llama-3.2-1B's shape (hidden 2048,
  16 layers, 32 heads, 8 KV heads, FFN 8192) with SmolLM2's 49152-token vocabulary.

Every engine runs in a child process per round, alternated within the round, after one unmeasured
warm-up round; greedy, end tokens ignored, the same token ids and thread count:
- "after": llmchat's CPU forward with the compiled GGUF kernel (native.py, qdot.c);
- "before": the same with LLMCHAT_NATIVE=0 (torch's int4/int8 kernels, as before issue 15);
- llama.cpp through llama-cpp-python (bench/anchor_llamacpp.py).
Prints medians, ratios to llama.cpp, and the weight bandwidth of a decode step (bytes of every
matmul's weights × decode tok/s) against a measured read bandwidth (a multi-threaded sum over 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {  # name: (hidden, layers, heads, kv_heads, ffn)
    "0.4b": (1536, 16, 24, 8, 4096),
    "1b": (2048, 16, 32, 8, 8192),
}
FTYPES = {"F16": 1, "BF16": 32, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}  # llama.cpp's LLAMA_FTYPE_*
DEFAULT_FORMATS = {"135m": ["Q4_0", "Q4_1", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"], "0.4b": ["Q4_0", "Q4_K_M", "Q8_0"],
                   "1b": ["Q4_0", "Q4_K_M", "Q6_K", "Q8_0"]}

QUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.allow_requantize, p.nthread = int(sys.argv[3]), True, 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


def bench_dir() -> Path:
    from llmchat.paths import cache_dir

    return cache_dir() / "bench"


def default_gguf() -> Path:
    from llmchat.config.registry import load_registry
    from llmchat.model.files import gguf_file

    return gguf_file(load_registry().get("smollm2"))


def write_random_llama(target: Path, shape: tuple[int, int, int, int, int]) -> None:
    """An F16 Llama GGUF of this shape with random weights and SmolLM2's tokenizer."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    hidden, layers, heads, kv, ffn = shape
    source = GGUFReader(str(default_gguf()))
    tmp = target.with_suffix(".tmp")
    writer = GGUFWriter(str(tmp), "llama")
    for name, field in source.fields.items():
        if name.startswith("tokenizer."):
            vtype = field.types[0]
            sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
            writer.add_key_value(name, field.contents(), vtype, sub)
    vocab = len(source.fields["tokenizer.ggml.tokens"].data)
    writer.add_name(f"random-llama-{target.stem}")
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(1)  # MOSTLY_F16
    rng = np.random.default_rng(0)
    head_dim = hidden // heads

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    writer.add_tensor("token_embd.weight", mat(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output.weight", mat(vocab, hidden))
    for i in range(layers):
        for name, rows, cols in (("attn_q", hidden, hidden), ("attn_k", kv * head_dim, hidden),
                                 ("attn_v", kv * head_dim, hidden), ("attn_output", hidden, hidden),
                                 ("ffn_gate", ffn, hidden), ("ffn_up", ffn, hidden), ("ffn_down", hidden, ffn)):
            writer.add_tensor(f"blk.{i}.{name}.weight", mat(rows, cols))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, target)


def ensure_file(size: str, fmt: str, anchor: str) -> Path:
    folder = bench_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if size == "135m":
        source = default_gguf()
        if fmt == "Q4_1":
            return source
    else:
        source = folder / f"llama-{size}-F16.gguf"
        if not source.is_file():
            print(f"writing {source.name} (random weights) …", flush=True)
            write_random_llama(source, SHAPES[size])
    target = folder / f"{'smollm2-135m' if size == '135m' else 'llama-' + size}-{fmt}.gguf"
    if not target.is_file():
        print(f"quantizing {target.name} with llama.cpp …", flush=True)
        tmp = target.with_suffix(".tmp")
        done = subprocess.run([anchor, "-c", QUANTIZE, str(source), str(tmp), str(FTYPES[fmt])], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"llama.cpp could not quantize {target.name}: {done.stderr[-400:]}")
        os.replace(tmp, target)
    return target


RUN_LLMCHAT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import dataclasses
from llmchat.config.registry import load_registry
from llmchat.engine.events import Finished
from llmchat.engine.loop import generate
from llmchat.engine.sampling import SamplingParams
from llmchat.model.load import load
model = dataclasses.replace(load(load_registry().get(sys.argv[2]), device="cpu"), eos_ids=())
ids, new = json.loads(sys.argv[3]), int(sys.argv[4])
tokens, done = [], None
for item in generate(model, ids, SamplingParams(temperature=0, max_new_tokens=new), alternatives=0):
    if isinstance(item, Finished):
        done = item
    else:
        tokens.append(item.id)
bytes_ = sum(t.numel() * t.element_size() for lin in model.model.matmuls() for t in lin.state("").values())
print(json.dumps({"decode_tps": done.decode_tps, "prefill_tps": done.prefill_tps, "tokens": tokens,
                  "weights": model.quant, "weight_bytes": bytes_}))
"""


def run_llmchat(path: Path, ids, new: int, native: bool, extra_env: dict | None = None) -> dict:
    env = dict(os.environ, LLMCHAT_NATIVE="1" if native else "0", **(extra_env or {}))
    proc = subprocess.run([sys.executable, "-c", RUN_LLMCHAT, str(ROOT), str(path), json.dumps(ids), str(new)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"llmchat failed on {path.name}: {proc.stderr[-600:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_anchor(anchor: str, path: Path, ids, new: int, threads: int) -> dict:
    proc = subprocess.run([anchor, str(ROOT / "bench" / "anchor_llamacpp.py"), str(path), json.dumps(ids), str(new), str(threads)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"llama.cpp failed on {path.name}: {proc.stderr[-400:]}")
    return json.loads(proc.stdout)


def read_bandwidth() -> float:
    """GB/s of a multi-threaded read of 1 GiB (torch sum over float32), best of 5."""
    import torch

    x = torch.ones(2 ** 28, dtype=torch.float32)
    x.sum()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best / 1e9


def prompt(n_tokens: int) -> list[int]:
    from tokenizers import Tokenizer

    from llmchat.model.gguf.convert import ensure_gguf_tokenizer

    tok = Tokenizer.from_file(str(ensure_gguf_tokenizer(default_gguf()) / "tokenizer.json"))
    text = "Large language models read text as tokens, and each step gives every token a probability. "
    ids = tok.encode(text * (n_tokens // 10 + 1), add_special_tokens=False).ids
    return ids[:n_tokens]


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="135m,0.4b,1b")
    parser.add_argument("--formats", default="", help="comma-separated; default: a set per size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--no-before", action="store_true", help="skip the LLMCHAT_NATIVE=0 column")
    parser.add_argument("--prompt-passes", type=int, choices=(1, 2), default=2,
                        help="int8 passes of a prompt's rows (LLMCHAT_PROMPT_PASSES): 2 as shipped, 1 as llama.cpp")
    parser.add_argument("--anchor-python", default=os.environ.get("LLMCHAT_ANCHOR_PYTHON", str(ROOT / ".venv-anchors/bin/python")))
    args = parser.parse_args()
    import torch

    anchor = args.anchor_python
    if subprocess.run([anchor, "-c", "import llama_cpp"], capture_output=True).returncode != 0:
        raise SystemExit(f"no llama-cpp-python at {anchor}: run `make bench-anchors` first")
    threads = torch.get_num_threads()
    ids = prompt(args.prompt_tokens)
    bandwidth = read_bandwidth()
    print(f"{threads} threads, prompt {len(ids)} tokens, {args.new} new tokens, {args.runs} alternating rounds "
          f"after a warm-up, prompts in {args.prompt_passes} int8 pass(es), read bandwidth {bandwidth:.1f} GB/s, {time.strftime('%Y-%m-%d')}", flush=True)
    header = ("| model / format | after: decode tok/s | before | llama.cpp | after × llama.cpp | before × llama.cpp | "
              "after: prefill tok/s | before | llama.cpp | after × llama.cpp | before × llama.cpp | weight GB/s (after) | "
              "greedy after = before |")
    rows = []
    for size in args.sizes.split(","):
        for fmt in (args.formats.split(",") if args.formats else DEFAULT_FORMATS[size]):
            path = ensure_file(size, fmt, anchor)
            passes = {"LLMCHAT_PROMPT_PASSES": str(args.prompt_passes)}
            engines = {"after": lambda: run_llmchat(path, ids, args.new, True, passes),
                       "llama.cpp": lambda: run_anchor(anchor, path, ids, args.new, threads)}
            if not args.no_before:
                engines["before"] = lambda: run_llmchat(path, ids, args.new, False)
            for run in engines.values():  # warm-up: packs the weights once, fills the page cache
                run()
            results = {name: [] for name in engines}
            for _ in range(args.runs):
                for name, run in engines.items():
                    results[name].append(run())
            after, cpp = results["after"], results["llama.cpp"]
            before = results.get("before")
            gbs = after[0]["weight_bytes"] * med(after, "decode_tps") / 1e9
            same = "–"
            if before:
                a, b = after[0]["tokens"], before[0]["tokens"]
                same = f"{next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))}/{len(a)}"
            bd = f"{med(before, 'decode_tps'):.1f}" if before else "–"
            bp = f"{med(before, 'prefill_tps'):.0f}" if before else "–"
            rbd = f"{med(before, 'decode_tps') / med(cpp, 'decode_tps'):.2f}" if before else "–"
            rbp = f"{med(before, 'prefill_tps') / med(cpp, 'prefill_tps'):.2f}" if before else "–"
            row = (f"| {size} {fmt} | {med(after, 'decode_tps'):.1f} | {bd} | {med(cpp, 'decode_tps'):.1f} | "
                   f"**{med(after, 'decode_tps') / med(cpp, 'decode_tps'):.2f}** | {rbd} | "
                   f"{med(after, 'prefill_tps'):.0f} | {bp} | {med(cpp, 'prefill_tps'):.0f} | "
                   f"**{med(after, 'prefill_tps') / med(cpp, 'prefill_tps'):.2f}** | {rbp} | "
                   f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%) | {same} |")
            rows.append(row)
            print(row, flush=True)
    print("\n" + header + "\n|" + " --- |" * 13)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
