"""Start-up: cold processes of `llmchat --help`, `tokenize --count` and `ask "hi" -n 1`, with
their floors and anchors, wall time and peak RSS of each process.

    python bench/startup.py [--model smollm2] [--runs 7] [--anchor-python .venv-anchors/bin/python]

Each command runs in a fresh process; the commands alternate within every round (so that a
warmer page cache or a busy neighbour affects all of them alike), after one unmeasured warm-up
round. Floors: a bare python that imports tokenizers, reads the same tokenizer.json and counts
(issue 15's floor) for tokenize, `python -c "import torch"` for ask.
Anchors: transformers' AutoTokenizer count, and llama.cpp (llama-cpp-python) loading the same GGUF
and producing one token, when --anchor-python has it. Goals (issue 7): `ask "hi"` ≤ 2.5 s wall,
peak RSS ≤ 2× llama.cpp's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmchat.model.files import gguf_file, tokenizer_folder  # noqa: E402
from llmchat.config.registry import load_registry  # noqa: E402

LLMCHAT = str(Path(sys.executable).parent / "llmchat")


def commands(model: str, folder: Path, text: str, anchor: str | None, gguf: Path | None) -> list[tuple[str, list[str]]]:
    transformers_count = ("from transformers import AutoTokenizer\n"
                          f"t = AutoTokenizer.from_pretrained({str(folder)!r})\n"
                          f"print(len(t({text!r})['input_ids']))")
    floor = (f"import tokenizers\nt = tokenizers.Tokenizer.from_file({str(folder / 'tokenizer.json')!r})\n"
             f"print(len(t.encode({text!r}).ids))")
    rows = [
        ('python -c "import tokenizers"', [sys.executable, "-c", "import tokenizers"]),
        ("tokenizers: read tokenizer.json, count (tokenize floor)", [sys.executable, "-c", floor]),
        ('python -c "import torch" (ask floor)', [sys.executable, "-c", "import torch"]),
        ("llmchat --help", [LLMCHAT, "--help"]),
        (f"llmchat tokenize -m {model} --count", [LLMCHAT, "tokenize", "-m", model, "--count", text]),
        ("transformers AutoTokenizer, count", [sys.executable, "-c", transformers_count]),
        (f'llmchat ask -m {model} "hi" -n 1', [LLMCHAT, "ask", "-m", model, "hi", "-n", "1", "--no-server"]),
    ]
    if anchor and gguf:
        code = (f"from llama_cpp import Llama\nl = Llama(model_path={str(gguf)!r}, n_threads=2, verbose=False)\n"
                "print(l.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=1)['choices'][0]['message']['content'])")
        rows.append(("llama.cpp: load + chat 'hi', 1 token", [anchor, "-c", code]))
    return rows


def run_child(argv: list[str], env: dict) -> tuple[float, float]:
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: exec the command with stdout/stderr to /dev/null
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execve(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed ({os.waitstatus_to_exitcode(status)})")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--text", default="hello world")
    parser.add_argument("--anchor-python", default=os.environ.get("LLMCHAT_ANCHOR_PYTHON", str(ROOT / ".venv-anchors/bin/python")))
    args = parser.parse_args()
    if args.runs < 5:
        raise SystemExit("--runs must be at least 5")
    spec = load_registry().get(args.model)
    # Resolve (and for a GGUF model, extract once) the tokenizer before timing anything.
    folder = tokenizer_folder(spec)
    gguf = gguf_file(spec) if spec.source in ("gguf", "package") else None
    anchor = args.anchor_python if Path(args.anchor_python).is_file() else None
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    rows = commands(args.model, folder, args.text, anchor, gguf)
    counts = {subprocess.run(argv, capture_output=True, text=True, env=env).stdout.strip()
              for label, argv in rows if "count" in label}
    if len(counts) != 1:
        raise SystemExit(f"llmchat and transformers disagree on the count: {counts}")
    for _, argv in rows:  # warm-up round: page cache, .pyc files, llmchat's packed-weight cache
        run_child(argv, env)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in rows}
    for _ in range(args.runs):
        for label, argv in rows:
            times[label].append(run_child(argv, env))
    print(f"{args.runs} alternating runs each, fresh processes, {time.strftime('%Y-%m-%d')}; tokenizer: {folder}\n")
    print("| command | wall median | min–max | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: |")
    for label, _ in rows:
        walls = [w for w, _ in times[label]]
        rss = statistics.median(r for _, r in times[label])
        print(f"| `{label}` | {statistics.median(walls) * 1000:.0f} ms | {min(walls) * 1000:.0f}–{max(walls) * 1000:.0f} ms | {rss:.0f} |")
    med = {label: statistics.median(w for w, _ in values) for label, values in times.items()}
    rss = {label: statistics.median(r for _, r in values) for label, values in times.items()}
    tok, ask = rows[4][0], rows[6][0]
    print(f"\ntokenize --count / its floor = {med[tok] / med[rows[1][0]]:.2f}× (goal ≤ 1.5×); "
          f"ask \"hi\" -n 1 = {med[ask]:.2f} s (goal ≤ 2.5 s)")
    if anchor and gguf:
        llama = rows[7][0]
        print(f"ask / llama.cpp wall = {med[ask] / med[llama]:.2f}×; peak RSS ask / llama.cpp = {rss[ask] / rss[llama]:.2f}× (goal ≤ 2×)")


if __name__ == "__main__":
    main()
