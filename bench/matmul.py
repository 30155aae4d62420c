"""The compiled GGUF kernel alone (qdot.c): milliseconds and GFLOP/s of one matmul per block type.

    python bench/matmul.py [--types Q4_0,Q8_0,...] [--shapes 16384x2048,2048x8192] [--tokens 1,64,200]
                           [--repeat 20]

The weights are random bytes laid out as each type's blocks (finite fp16 scales), the activations
random floats; the shapes are ~1B Llama's: gate_up 16384x2048 (fused gate and up) and down 2048x8192.
`precise` is the two-pass activations every down_proj (and every prompt row) takes. The matrix runs as a model
holds it (4-6 bit types repacked in 8-row groups, quant.GgufLinear.from_file); "as filed" is the same
product on the file's own layout, and "repacked ×" the speed-up. GB/s is the weight bytes read per call
over its time, the figure that bounds decode (T = 1); GFLOP/s (2 x rows x cols x T) bounds prefill.
Run with nothing else busy; the thread count is torch's (LLMCHAT_THREADS / OMP_NUM_THREADS fix it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmchat.model.cpu import native  # noqa: E402
from llmchat.model.cpu import quant as Q  # noqa: E402

SCALES = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2],
          "Q6_K": [208]}


def blocks_of(name: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    per, size = GGML_QUANT_SIZES[GGMLQuantizationType[name]]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(rows * cols // per, size), dtype=np.uint8)
    for at in SCALES[name]:
        data[:, at:at + 2] = (rng.random(len(data)) * 0.05 + 0.001).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return data.reshape(rows, -1)


def timed(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from gguf import GGMLQuantizationType

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_0,Q4_K,Q6_K,Q8_0")
    ap.add_argument("--shapes", default="16384x2048,2048x8192")
    ap.add_argument("--tokens", default="1,64,200")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    if native.library() is None:
        print(f"no kernel: {native.why_not()}", file=sys.stderr)
        return 1
    features = native.library().llmchat_features()
    print(f"threads {torch.get_num_threads()}, kernel {'AVX-512 VNNI' if features & 2 else 'AVX2' if features else 'portable'}")
    print(f"{'type':6} {'shape':>12} {'T':>4} {'mode':>8} {'ms':>8} {'GB/s':>7} {'GFLOP/s':>8} {'as filed ms':>11} "
          f"{'repacked ×':>10}")
    for name in args.types.split(","):
        for shape in args.shapes.split(","):
            rows, cols = (int(v) for v in shape.split("x"))
            blocks = torch.from_numpy(blocks_of(name, rows, cols))
            kind = int(GGMLQuantizationType[name])
            linear = Q.GgufLinear.from_file(blocks, kind, cols)  # what a model runs: repacked where it can be
            filed = Q.GgufLinear(blocks, torch.tensor([kind, cols, 0]))  # the file's layout, for the ratio
            for T in (int(t) for t in args.tokens.split(",")):
                x = torch.randn(T, cols)
                for precise in (False, True):
                    repeat = args.repeat if T == 1 else max(3, args.repeat // 4)
                    sec = min(timed(lambda: linear(x, precise=precise), repeat) for _ in range(2))
                    base = sec if not linear.repacked else min(timed(lambda: filed(x, precise=precise), repeat) for _ in range(2))
                    mode = "precise" if precise else "plain"
                    print(f"{name:6} {shape:>12} {T:>4} {mode:>8} {sec * 1e3:8.3f} {blocks.numel() / sec / 1e9:7.1f} "
                          f"{2 * rows * cols * T / sec / 1e9:8.1f} {base * 1e3:11.3f} {base / sec:10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
