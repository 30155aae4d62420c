"""llama.cpp's decode and prefill on the same GGUF, the same token ids and the same thread count.

Run by bench/decode.py with the python of a separate venv holding llama-cpp-python
(`make bench-anchors`); prints one JSON object. Greedy, end tokens ignored, so that the token
count matches llmchat's run exactly:

    python bench/anchor_llamacpp.py MODEL.gguf IDS_JSON NEW THREADS
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
from llama_cpp import Llama


def last_logits(llm: Llama) -> np.ndarray:
    """The last evaluated position's logits (llama-cpp-python copies them into `scores` only with
    logits_all, which would slow every step down)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def main() -> None:
    path, ids, new, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    started = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    load = time.perf_counter() - started
    t0 = time.perf_counter()
    llm.eval(ids)
    token = int(np.argmax(last_logits(llm)))
    ttft = time.perf_counter() - t0
    out = [token]
    t1 = time.perf_counter()
    for _ in range(new - 1):
        llm.eval([token])
        token = int(np.argmax(last_logits(llm)))
        out.append(token)
    decode = time.perf_counter() - t1
    print(json.dumps({"decode_tps": (new - 1) / decode, "prefill_tps": len(ids) / ttft, "ttft": ttft, "load_s": load,
                      "tokens": out, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
