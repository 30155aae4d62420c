"""Start-up time of `llmchat tokenize --count` against its floor and against transformers.

    python bench/startup.py [--model smollm2] [--runs 7] [--text "hello world"]

Each command runs in a fresh process; the commands alternate within every round (so that a
warmer page cache or a busy neighbour affects all of them alike), after one unmeasured warm-up
round. Prints a markdown table: median wall time, min–max, and the ratio to the floor, which is
`python -c "import tokenizers"` (any tokenize command pays at least that). The goal is
`llmchat tokenize --count` ≤ 1.5× the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmchat.loading import tokenizer_folder  # noqa: E402
from llmchat.registry import load_registry  # noqa: E402

LLMCHAT = str(Path(sys.executable).parent / "llmchat")


def commands(model: str, folder: Path, text: str) -> list[tuple[str, list[str]]]:
    transformers_count = ("from transformers import AutoTokenizer\n"
                          f"t = AutoTokenizer.from_pretrained({str(folder)!r})\n"
                          f"print(len(t({text!r})['input_ids']))")
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ('python -c "import tokenizers" (floor)', [sys.executable, "-c", "import tokenizers"]),
        ("llmchat --help", [LLMCHAT, "--help"]),
        (f"llmchat tokenize -m {model} --count", [LLMCHAT, "tokenize", "-m", model, "--count", text]),
        ("transformers AutoTokenizer, count", [sys.executable, "-c", transformers_count]),
    ]


def run_once(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=300)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--text", default="hello world")
    args = parser.parse_args()
    if args.runs < 5:
        raise SystemExit("--runs must be at least 5")
    # Resolve (and for a GGUF model, extract once) the tokenizer before timing anything.
    folder = tokenizer_folder(load_registry().get(args.model), progress=False)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    rows = commands(args.model, folder, args.text)
    counts = {subprocess.run(argv, capture_output=True, text=True, env=env).stdout.strip()
              for label, argv in rows if "count" in label}
    if len(counts) != 1:
        raise SystemExit(f"llmchat and transformers disagree on the count: {counts}")
    for _, argv in rows:  # warm-up round: page cache, .pyc files
        run_once(argv, env)
    times: dict[str, list[float]] = {label: [] for label, _ in rows}
    for _ in range(args.runs):
        for label, argv in rows:
            times[label].append(run_once(argv, env))
    floor = statistics.median(times[rows[1][0]])
    print(f"{args.runs} alternating runs each, fresh processes; tokenizer: {folder}; count = {counts.pop()}\n")
    print("| command | median | min–max | × floor |")
    print("| --- | ---: | ---: | ---: |")
    for label, _ in rows:
        values = times[label]
        median = statistics.median(values)
        print(f"| `{label}` | {median * 1000:.0f} ms | {min(values) * 1000:.0f}–{max(values) * 1000:.0f} ms "
              f"| {median / floor:.2f}× |")
    ratio = statistics.median(times[rows[3][0]]) / floor
    print(f"\nllmchat tokenize --count / floor = {ratio:.2f}× (goal ≤ 1.5×: {'met' if ratio <= 1.5 else 'not met'})")


if __name__ == "__main__":
    main()
