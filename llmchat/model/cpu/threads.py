"""How many threads a decode step uses, chosen again as the machine's load changes.

torch's OpenMP threads (and qdot.c's, the same pool) spin while they wait for each other; when
another busy process holds one of the cores, a spinning thread waits on a thread that is not
running, and a decode step becomes ~30x slower (bench/busy.py: 58.9 -> 2.0 tok/s for 2 threads on
2 cores beside one `yes > /dev/null`; llama.cpp 75.1 -> 0.7). One thread per free core degrades
least (1 thread beside `yes`: 47 tok/s). So every `CHECK_EVERY` forward calls, llmchat counts the
other processes that are running and uses cores - busy threads (at least 1). OMP_NUM_THREADS or
LLMCHAT_THREADS, when set, fix the count instead. A thread is taken away only when two readings
in a row agree (a process that was runnable for an instant, such as the shell or a kernel worker,
would otherwise halve an idle machine's speed for 32 tokens): a reading that asks for fewer threads
is checked again at the very next forward call. A freed core is taken back at the first reading.
"""

from __future__ import annotations

import os

import torch

CHECK_EVERY = 32


def busy_others() -> int:
    """Processes other than this one in state R (running or runnable) now, from /proc."""
    me, busy = os.getpid(), 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2:][:1] == b"R":
            busy += 1
    return busy


def choose(cores: int, busy: int) -> int:
    return max(1, cores - busy)


class ThreadPolicy:
    def __init__(self):
        fixed = os.environ.get("LLMCHAT_THREADS") or os.environ.get("OMP_NUM_THREADS")
        self.fixed = int(fixed) if fixed and fixed.isdigit() and int(fixed) > 0 else None
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.calls = 0
        self.due = 1  # the call that reads the load next
        self.last = None  # the previous reading's choice

    def tick(self) -> None:
        """Called once per forward pass; reads the load every CHECK_EVERY calls (or at the next call, to
        confirm a reading that asks for fewer threads) and sets torch's thread count."""
        self.calls += 1
        if self.fixed is not None or self.calls < self.due:
            return
        want, before = choose(self.cores, busy_others()), self.last
        self.last = want
        now = torch.get_num_threads()
        if want > now or (want < now and want == before):
            torch.set_num_threads(want)
        self.due = self.calls + (1 if want < torch.get_num_threads() else CHECK_EVERY)
