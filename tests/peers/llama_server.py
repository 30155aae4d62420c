"""llama.cpp's `llama-server`, the real remote engine the tests talk to.

Built from the llama-cpp-python source package on PyPI (it vendors llama.cpp) with CMake, target
`llama-server` only, and cached in the user cache directory keyed on the version and the CPU's
instruction-set flags (GGML_NATIVE builds for this CPU), so a machine pays the ~12 min once.

    python tests/peers/llama_server.py build     # build when missing, print the binary's path
    python tests/peers/llama_server.py path      # print the cached path (exit 1 when missing)

`make test` runs `build` first; when it fails, the remote tests fail with the reason it wrote
(never skip): see `build_failure()`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python; its vendor/llama.cpp is the server that gets built
SPEC = f"llama-cpp-python=={VERSION}"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
]


def _cpu_key() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha256(flags.encode()).hexdigest()[:10]


def cache_dir() -> Path:
    # LLMCHAT_PEERS_CACHE: the tests isolate XDG_CACHE_HOME per session, but the build is kept per machine
    base = Path(os.environ.get("LLMCHAT_PEERS_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llmchat" / "peers" / f"llama-server-{VERSION}-{_cpu_key()}"


def binary() -> Path:
    return cache_dir() / "llama-server"


def failure_file() -> Path:
    return cache_dir().with_name(cache_dir().name + ".failed")


def build_failure() -> str | None:
    """Why the last build failed, or None when the binary is there."""
    if binary().is_file():
        return None
    f = failure_file()
    if f.is_file():
        return f.read_text().strip()[-2000:]
    return (f"llama-server is not built (no {binary()}); run "
            f"`python tests/peers/llama_server.py build` (make test does)")


def _run(cmd: list[str], log, cwd: Path | None = None) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[:3])} …` exited {proc.returncode}")


def build() -> Path:
    target = binary()
    if target.is_file():
        return target
    missing = [t for t in ("cmake", "c++") if shutil.which(t) is None]
    if missing:
        msg = (f"cannot build llama-server: {', '.join(missing)} not found; "
               f"install them (Debian: apt-get install cmake g++)")
        failure_file().parent.mkdir(parents=True, exist_ok=True)
        failure_file().write_text(msg + "\n")
        raise SystemExit(msg)
    failure_file().unlink(missing_ok=True)
    cache_dir().parent.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir().with_name(cache_dir().name + ".log")
    t0 = time.monotonic()
    print(f"building llama-server ({SPEC}) into {cache_dir()} (about 12 min on 2 cores, once "
          f"per machine); log: {log_path}", file=sys.stderr, flush=True)
    try:
        with open(log_path, "w") as log, tempfile.TemporaryDirectory(prefix="llama-server-") as tmp:
            work = Path(tmp)
            sdist = os.environ.get("LLAMA_CPP_SDIST")
            if not sdist:
                _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                      "--no-binary", ":all:", SPEC, "-d", str(work)], log)
                sdist = str(next(work.glob("llama_cpp_python-*.tar.gz")))
            with tarfile.open(sdist) as tf:
                tf.extractall(work, filter="data")
            src = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
            bdir = work / "build"
            _run(["cmake", "-S", str(src), "-B", str(bdir), *CMAKE_FLAGS], log)
            jobs = str(os.cpu_count() or 2)
            _run(["cmake", "--build", str(bdir), "--target", "llama-server", "-j", jobs], log)
            built = next(bdir.rglob("bin/llama-server"))
            staging = cache_dir().with_name(cache_dir().name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            shutil.copy2(built, staging / "llama-server")
            shutil.rmtree(cache_dir(), ignore_errors=True)
            staging.rename(cache_dir())  # atomic: the binary is there whole or not at all
    except Exception as exc:
        tail = log_path.read_text()[-1500:] if log_path.is_file() else ""
        msg = f"llama-server build failed: {exc} (log: {log_path})\n{tail}"
        failure_file().write_text(msg)
        raise SystemExit(msg) from None
    print(f"built llama-server in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return target


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "build"
    if cmd == "path":
        if binary().is_file():
            print(binary())
            return 0
        print(build_failure(), file=sys.stderr)
        return 1
    if cmd == "build":
        print(build())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
