"""The cost of the HTTP face: `serve --http` streaming against the engine in-process, side by side.

    python bench/serve_http.py [--model smollm2] [--quant auto] [--rounds 5] [--tokens 64]

Starts `llmchat serve --http 0` for the model, and loads the same model in this process. Each
round runs the same greedy chat completion both ways, alternating which goes first, with a prompt
new to both (so the server's prefix cache gives it no head start): in-process through
`LocalModel.generate`, over HTTP through a streamed `/v1/chat/completions` read with httpx.
Reported: time to first token (request sent → first token received) and decode ms/token (first
→ last token), medians over the rounds, and HTTP's extra cost per token.
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

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmchat.config.registry import load_registry  # noqa: E402
from llmchat.engine.sampling import SamplingParams  # noqa: E402
from llmchat.engine.source import LocalModel  # noqa: E402
from llmchat.model.load import load  # noqa: E402

LLMCHAT = str(Path(sys.executable).parent / "llmchat")


def in_process(source, text: str, tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    ids = source.render([{"role": "user", "content": text}])
    stamps = [time.perf_counter() for e in source.generate(ids, SamplingParams(temperature=0, max_new_tokens=tokens))
              if not hasattr(e, "reason")]
    return stamps[0] - started, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), len(stamps)


def over_http(url: str, text: str, tokens: int) -> tuple[float, float, int]:
    body = {"messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": tokens, "stream": True}
    stamps = []
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=300) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"]:
                choice = json.loads(line[6:])["choices"][0]
                if choice.get("token_ids"):
                    stamps.append(time.perf_counter())
    return stamps[0] - started, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), len(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--quant", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    quant = ["--quant", args.quant] if args.quant else []
    server = subprocess.Popen([LLMCHAT, "serve", "--http", "0", "-m", args.model, *quant], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        url = line.split(" on ", 1)[1].strip()
        source = LocalModel(load(load_registry().get(args.model), quant=args.quant), reuse=False)
        rows: dict[str, list[tuple[float, float, int]]] = {"in-process": [], "HTTP": []}
        for n in range(args.rounds + 1):  # round 0 warms both up and is not counted
            text = f"Round {n}: write a long story about a lighthouse keeper."
            order = [("in-process", lambda: in_process(source, text, args.tokens)),
                     ("HTTP", lambda: over_http(url, text, args.tokens))]
            for name, run in (order if n % 2 else order[::-1]):
                result = run()
                if n:
                    rows[name].append(result)
        med = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                      statistics.median(r[2] for r in runs)) for name, runs in rows.items()}
        print(f"model {args.model} (quant {args.quant or 'auto'}), {args.rounds} rounds, greedy, up to {args.tokens} tokens")
        print(f"{'path':<12} {'TTFT ms':>9} {'decode ms/token':>16} {'tok/s':>7} {'tokens':>7}")
        for name, (ttft, per, count) in med.items():
            print(f"{name:<12} {1000 * ttft:>9.1f} {1000 * per:>16.2f} {1 / per:>7.1f} {count:>7.0f}")
        local, http = med["in-process"], med["HTTP"]
        print(f"HTTP extra: {1000 * (http[1] - local[1]):+.2f} ms/token ({http[1] / local[1]:.2f}×), "
              f"TTFT {1000 * (http[0] - local[0]):+.1f} ms ({http[0] / local[0]:.2f}×)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
