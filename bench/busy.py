"""Decode on a busy machine (issue 15, item 4): one `yes > /dev/null` running beside the engines.

    python bench/busy.py [--model PATH.gguf] [--runs 2] [--new 48]

For llmchat as it runs by default (threads chosen from the load), and under OMP_NUM_THREADS 2 and 1
and OMP_WAIT_POLICY active / passive, and llama.cpp at 2 and 1 threads: decode tok/s idle and with
the busy neighbour, alternating, medians. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from scale import default_gguf, prompt, run_anchor, run_llmchat  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--new", type=int, default=48)
    parser.add_argument("--anchor-python", default=str(ROOT / ".venv-anchors/bin/python"))
    args = parser.parse_args()
    path = Path(args.model) if args.model else default_gguf()
    ids = prompt(100)
    variants = {"llmchat, default (threads adapt to the load, threads.py)": lambda: run_llmchat(path, ids, args.new, True)}
    for threads in (2, 1):
        for policy in ("active", "passive"):
            env = {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": policy.upper()}
            variants[f"llmchat, {threads} threads, OMP_WAIT_POLICY={policy}"] = (
                lambda env=env: run_llmchat(path, ids, args.new, True, env))
        variants[f"llama.cpp, {threads} threads"] = lambda t=threads: run_anchor(args.anchor_python, path, ids, args.new, t)
    rows = {name: {"idle": [], "busy": []} for name in variants}
    for run in variants.values():
        run()  # warm-up
    for _ in range(args.runs):
        for state in ("idle", "busy"):
            hog = subprocess.Popen("yes > /dev/null", shell=True, start_new_session=True) if state == "busy" else None
            try:
                for name, run in variants.items():
                    rows[name][state].append(run()["decode_tps"])
            finally:
                if hog is not None:
                    os.killpg(hog.pid, 9)
                    hog.wait()
    print(f"{path.name}, {args.new} new tokens, {args.runs} rounds\n")
    print("| engine | idle decode tok/s | with `yes > /dev/null` | busy / idle |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        idle, busy = statistics.median(r["idle"]), statistics.median(r["busy"])
        print(f"| {name} | {idle:.1f} | {busy:.1f} | {busy / idle:.2f} |")


if __name__ == "__main__":
    main()
