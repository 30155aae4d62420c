"""qdot.c, llmchat's one compiled kernel, built on first use with the machine's C compiler.

Why a compiled kernel at all (README, "Performance"): torch has no kernel that multiplies int8
activations with GGUF's block formats, and its weight-only int4/int8 kernels reach about half of
llama.cpp's speed at 1B and a fifth on Q8_0/Q6_K. qdot.c does what llama.cpp's CPU backend does
(int8 activations x the file's own blocks, AVX2), in ~400 lines of C with no dependency.

The library is compiled once per (source, compiler, CPU) into $XDG_CACHE_HOME/llmchat/native/
(`make setup` does it ahead, through `build()`; a temp name renamed into place, so a crash never leaves half a
library) and loaded with ctypes. Without a compiler, or with LLMCHAT_NATIVE=0, `library()` is None
and `why_not()` says why: GGUF weights then run on torch's kernels (quant.py), slower but correct.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from ...paths import atomic_file, cache_dir

SOURCE = Path(__file__).with_name("qdot.c")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")
_why: str | None = None


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _cpu_key() -> str:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return platform.machine() + "|" + flags


def library_path(cc: str) -> Path:
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError):
        version = []
    key = hashlib.sha256(b"|".join([SOURCE.read_bytes(), " ".join(FLAGS).encode(), cc.encode(),
                                    "".join(version).encode(), _cpu_key().encode()])).hexdigest()[:16]
    return cache_dir() / "native" / f"qdot-{key}.so"


def build() -> Path:
    """Compile qdot.c when it is not cached; the library's path. Raises RuntimeError with the reason."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc: `apt-get install gcc`, or set CC)")
    if shutil.which(cc) is None:
        raise RuntimeError(f"CC={cc} is not a command here (install gcc: `apt-get install gcc`, or fix CC)")
    target = library_path(cc)
    if target.is_file():
        return target
    with atomic_file(target) as tmp:
        done = subprocess.run([cc, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            first = next((line for line in lines if "error" in line), lines[0] if lines else f"exit {done.returncode}")
            raise RuntimeError(f"{cc} could not build qdot.c: {first.strip()}")
    return target


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (`why_not()` tells why). torch is imported first, so that the
    library binds to torch's own libgomp and both share one OpenMP thread pool."""
    global _why
    if os.environ.get("LLMCHAT_NATIVE", "1") == "0":
        _why = "LLMCHAT_NATIVE=0"
        return None
    import torch  # noqa: F401  (loads libgomp.so.1 before the library needs it)

    try:
        lib = ctypes.CDLL(str(build()))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _why = str(exc).splitlines()[0]
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.llmchat_qmatmul.argtypes = [ctypes.c_int, ptr, i64, i64, ptr, i64, ptr]
    lib.llmchat_qmatmul.restype = ctypes.c_int
    lib.llmchat_qmatmul_precise.argtypes = lib.llmchat_qmatmul.argtypes
    lib.llmchat_qmatmul_precise.restype = ctypes.c_int
    lib.llmchat_dequant_rows.argtypes = [ctypes.c_int, ptr, i64, ptr, i64, ptr]
    lib.llmchat_dequant_rows.restype = ctypes.c_int
    lib.llmchat_row_bytes.argtypes = [ctypes.c_int, i64]
    lib.llmchat_row_bytes.restype = i64
    lib.llmchat_rp_row_bytes.argtypes = [ctypes.c_int, i64]
    lib.llmchat_rp_row_bytes.restype = i64
    lib.llmchat_repack.argtypes = [ctypes.c_int, ptr, i64, i64, ptr]
    lib.llmchat_repack.restype = ctypes.c_int
    lib.llmchat_features.argtypes = []
    lib.llmchat_features.restype = ctypes.c_int
    lib.llmchat_rmsnorm.argtypes = [ptr, ptr, i64, i64, ctypes.c_float, ptr]
    lib.llmchat_swiglu.argtypes = [ptr, i64, i64, ptr]
    lib.llmchat_attend1.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, ctypes.c_float, ptr]
    for fn in (lib.llmchat_rmsnorm, lib.llmchat_swiglu, lib.llmchat_attend1):
        fn.restype = None
    f32 = ctypes.c_float
    lib.llmchat_decode_step.argtypes = [ptr, i64, i64, i64, i64, i64, i64, f32, f32, ptr, ptr, ptr, i64, i64, ptr, ptr]
    lib.llmchat_decode_step.restype = ctypes.c_int
    return lib


class QLin(ctypes.Structure):
    """qdot.c's llmchat_qlin: one GGUF matmul of a decode step."""

    _fields_ = [("type", ctypes.c_int32), ("precise", ctypes.c_int32), ("rows", ctypes.c_int64), ("w", ctypes.c_void_p)]


class Layer(ctypes.Structure):
    """qdot.c's llmchat_layer: a decoder layer's norms and matmuls, for llmchat_decode_step."""

    _fields_ = [("attn_norm", ctypes.c_void_p), ("mlp_norm", ctypes.c_void_p), ("qkv", QLin * 3), ("o", QLin),
                ("gu", QLin * 2), ("down", QLin), ("nqkv", ctypes.c_int32), ("ngu", ctypes.c_int32)]


def why_not() -> str | None:
    """Why `library()` is None (None when it loaded)."""
    library()
    return _why
