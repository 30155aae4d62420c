"""Decode and prefill on CUDA, bf16 and int4, for the default model and the ~1B random Llama.

    python bench/gpu.py [--new 128] [--prompt-tokens 512] [--sizes 135m,1b]      (≤ 8 min on one GPU)

Prepared for the `device` tool's GPU machine (issue 15, item 6); it has not run on a GPU yet: no
device was lent to the session that wrote it. On CUDA llmchat runs transformers' modeling code
through its own sampling loop (llmchat.engine.loop.generate: per-token probabilities, top-5, entropy):
- bf16: `load(device="cuda", dtype="bfloat16")`;
- int4: the same model with every decoder nn.Linear swapped for torch's tinygemm int4 kernel
  (`_weight_int4pack_mm`, groups of 128, the recipe of gpt-fast); a failure is printed, not raised.
The ~1B model is read from bench/scale.py's cache when present (`llama-1b-Q8_0.gguf`), else skipped.
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402


class Int4Linear(torch.nn.Module):
    """Weight-only int4 (asymmetric, groups of 128) on torch's CUDA tinygemm kernel."""

    def __init__(self, linear: torch.nn.Linear, group: int = 128, inner_k_tiles: int = 8):
        super().__init__()
        w = linear.weight.detach().float()
        out, inp = w.shape
        g = w.reshape(out, inp // group, group)
        lo, hi = g.amin(-1), g.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-6)
        codes = torch.clamp(torch.round((g - lo[..., None]) / scale[..., None]), 0, 15).to(torch.int32).reshape(out, inp)
        packed_u8 = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
        self.packed = torch.ops.aten._convert_weight_to_int4pack(packed_u8.contiguous(), inner_k_tiles)
        zero = lo + 8 * scale
        self.scales_zeros = torch.stack([scale.t(), zero.t()], -1).to(torch.bfloat16).contiguous()
        self.group, self.bias = group, linear.bias

    def forward(self, x):
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.packed, self.group,
                                               self.scales_zeros)
        y = y.reshape(*shape[:-1], -1)
        return y + self.bias if self.bias is not None else y


def to_int4(model: torch.nn.Module) -> int:
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child_name != "lm_head" and child.in_features % 128 == 0:
                setattr(module, child_name, Int4Linear(child))
                swapped += 1
    return swapped


def measure(loaded, ids, new):
    from llmchat.engine.events import Finished
    from llmchat.engine.loop import generate
    from llmchat.engine.sampling import SamplingParams

    done = None
    for _ in range(2):  # the first run warms CUDA kernels up
        for item in generate(loaded, ids, SamplingParams(temperature=0, max_new_tokens=new), alternatives=5):
            if isinstance(item, Finished):
                done = item
    return done.prefill_tps, done.decode_tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--sizes", default="135m,1b")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run this on the GPU machine (`device` tool)")
    from llmchat.config.registry import load_registry
    from llmchat.model.load import load
    from scale import bench_dir, prompt

    ids = prompt(args.prompt_tokens)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, prompt {len(ids)} tokens, {args.new} new, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| model | weights | prefill tok/s | decode tok/s |\n| --- | --- | ---: | ---: |")
    registry = load_registry()
    for size in args.sizes.split(","):
        name = "smollm2" if size == "135m" else str(bench_dir() / "llama-1b-Q8_0.gguf")
        if size != "135m" and not Path(name).is_file():
            print(f"| {size} | (no {name}: run bench/scale.py --sizes 1b first) | | |")
            continue
        loaded = dataclasses.replace(load(registry.get(name), device="cuda", dtype="bfloat16"), eos_ids=())
        prefill, decode = measure(loaded, ids, args.new)
        print(f"| {size} | bf16 | {prefill:.0f} | {decode:.1f} |", flush=True)
        try:
            swapped = to_int4(loaded.model)
            prefill, decode = measure(loaded, ids, args.new)
            print(f"| {size} | int4 tinygemm ({swapped} linears) | {prefill:.0f} | {decode:.1f} |", flush=True)
        except Exception as exc:  # a kernel this torch/GPU lacks: say so, keep the bf16 row
            print(f"| {size} | int4: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | |", flush=True)
        del loaded
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
