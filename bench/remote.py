"""The remote path's own cost: llmchat over llama-server against the server's own timing.

    python bench/remote.py [--runs 5] [--new 128] [--k 0,5,20] [--url URL]

Starts llama.cpp's llama-server on the default GGUF (the binary tests/peers/llama_server.py
builds and caches; or --url to measure a server already running), then, alternated in every round
after one unmeasured warm-up, for each K (alternatives per token):
- `raw`: plain httpx reading the same /completion stream (the floor of any Python client);
- `llmchat`: `RemoteEngine.generate` (SSE parsing, TokenEvents, the incremental detokenizer, stops).
Both send the same greedy request with the prompt cache on, so the server's prefill is the same.
The server reports its own decode time (`timings.predicted_ms` over `predicted_n` tokens); the
client's decode time is the wall time from the first token's arrival to the last's. Per-token
client overhead = client ms/token − server ms/token (medians, min–max over rounds).
The server and this script share the machine: run it with nothing else busy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from llmchat.config.registry import ModelSpec, load_registry  # noqa: E402
from llmchat.engine.events import Finished  # noqa: E402
from llmchat.engine.sampling import SamplingParams  # noqa: E402
from llmchat.model.files import gguf_file, tokenizer_folder  # noqa: E402
from llmchat.remote.source import RemoteEngine  # noqa: E402
from llmchat.tokenizer.lite import LiteTokenizer  # noqa: E402

TEXT = ("Large language models read text as tokens. Each step, the model looks at every token so far and "
        "produces a probability for every token in its vocabulary; a sampler then picks one. ")


def raw_run(url: str, body: dict) -> dict:
    started = time.perf_counter()
    arrivals, timings = [], {}
    with httpx.stream("POST", url + "/completion", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            now = time.perf_counter()
            arrivals += [now] * len(data.get("tokens") or [])
            if data.get("stop"):
                timings = data.get("timings") or {}
    return {"arrivals": arrivals, "total": time.perf_counter() - started, "server": timings}


def llmchat_run(source: RemoteEngine, ids: list[int], new: int, k: int) -> dict:
    started = time.perf_counter()
    arrivals = []
    params = SamplingParams(temperature=0.0, max_new_tokens=new)
    for item in source.generate(ids, params, alternatives=k):
        if not isinstance(item, Finished):
            arrivals.append(time.perf_counter())
    server = dict(source.last_server)
    return {"arrivals": arrivals, "total": time.perf_counter() - started, "server": server}


def per_token(run: dict) -> tuple[float, float] | None:
    """(client ms/token, server ms/token) over the decoded tokens after the first."""
    a, s = run["arrivals"], run["server"]
    if len(a) < 3 or not s.get("predicted_ms") or not s.get("predicted_n"):
        return None
    client = (a[-1] - a[0]) * 1000 / (len(a) - 1)
    return client, s["predicted_ms"] / s["predicted_n"]


def answer_overhead(run: dict) -> float | None:
    """Whole-answer ms the client adds: its wall time from sending to the end, minus the server's
    prompt and decode time (connection, request encoding, the last chunk, closing)."""
    s = run["server"]
    if s.get("prompt_ms") is None or s.get("predicted_ms") is None:
        return None
    return run["total"] * 1000 - s["prompt_ms"] - s["predicted_ms"]


def fmt(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--k", default="0,5,20", help="alternatives per token, comma-separated")
    parser.add_argument("--url", help="a llama-server already running (default: start one on the default GGUF)")
    args = parser.parse_args()
    registry = load_registry()
    spec = registry.get("smollm2")
    server = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        from peers.server import LlamaServer

        server = LlamaServer(gguf_file(spec), log=Path(tempfile.mkdtemp()) / "llama-server.log")
        url = server.url
    try:
        remote = ModelSpec(alias="bench-remote", source="remote", location=url, engine="llama.cpp",
                           tokenizer="smollm2", timeout=120.0)
        local = LiteTokenizer(tokenizer_folder(spec, check=False), spec)
        source = RemoteEngine(remote, local_tokenizer=local, notice=lambda line: None)
        text = TEXT * 4
        ids = source.render([{"role": "user", "content": text + "\nWrite a long story about it."}])
        ks = [int(k) for k in args.k.split(",")]
        results: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(args.runs + 1):
            for k in ks:
                body = {"prompt": ids, "n_predict": args.new, "n_probs": k, "post_sampling_probs": False,
                        "return_tokens": True, "stream": True, "cache_prompt": True, "temperature": 0}
                for name in ("raw", "llmchat"):
                    run = raw_run(url, body) if name == "raw" else llmchat_run(source, ids, args.new, k)
                    if round_:  # round 0 warms the server's prompt cache and both clients
                        results.setdefault((name, k), []).append(run)
        print(f"llama-server {url}, {len(ids)}-token prompt, {args.new} new tokens, greedy, {args.runs} rounds "
              f"(median, min–max)\n")
        print(f"{'client':8} {'K':>3} {'tokens':>6} {'client ms/tok':>18} {'server ms/tok':>18} "
              f"{'overhead ms/tok':>18} {'ratio':>6} {'per answer ms':>18}")
        for (name, k), runs in results.items():
            pairs = [p for p in (per_token(r) for r in runs) if p]
            if not pairs:
                print(f"{name:8} {k:>3} (too few tokens to time)")
                continue
            client = [c for c, _ in pairs]
            srv = [s for _, s in pairs]
            over = [c - s for c, s in pairs]
            ratio = statistics.median(srv) / statistics.median(client)
            whole = [w for w in (answer_overhead(r) for r in runs) if w is not None]
            print(f"{name:8} {k:>3} {len(runs[0]['arrivals']):>6} {fmt(client):>18} {fmt(srv):>18} "
                  f"{fmt(over):>18} {ratio:>6.2f} {fmt(whole, 1) if whole else '-':>18}")
        print("\nratio: server ms/token ÷ client ms/token (1.00: the client adds nothing to the server's pace)."
              "\nper answer: client wall time minus the server's prompt_ms + predicted_ms."
              "\nserver ms/tok differs between clients when they share the cores: the client's CPU slows the server.")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
