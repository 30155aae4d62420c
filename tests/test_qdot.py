"""The compiled GGUF kernel (llmchat/model/cpu/qdot.c through native.py) against references.

- its arithmetic: for every block type, y = x @ W^T equals, to float rounding, the same sum
  computed in float64 from gguf-py's dequantized W and the int8 activations quantized as the kernel
  does (d = amax / 127 per 32, round half to even); and it is within the activation rounding of
  the plain float product;
- one token (the fused decode loop) and many (the tiled prefill loop) give the same rows;
- embedding rows come out exactly as gguf-py dequantizes them;
- rows repacked in groups of 8 (the 4-6 bit types and Q8_0) keep the file's values exactly and give its products;
- float16 / bfloat16 rows give the float product of their values (no activation quantization);
- the portable build (no AVX2) gives the same numbers, and the AVX2 build the VNNI one's to the bit (Q8_0's one pass: to rounding); no compiler means torch's kernels, said why.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from llmchat.model.cpu import native
from llmchat.model.cpu import quant as Q
from llmchat.model.cpu import weights as W

TYPES = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def blocks_of(kind_name: str, rows: int, cols: int, seed: int) -> np.ndarray:
    """Random bytes laid out as blocks of this type, with finite fp16 scales (Q4_1's min negative)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    kind = GGMLQuantizationType[kind_name]
    per, size = GGML_QUANT_SIZES[kind]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(rows * cols // per, size), dtype=np.uint8)
    for at in TYPES[kind_name]:
        values = rng.random(len(data)) * 0.05 + 0.001
        if kind_name in ("Q4_1", "Q5_1") and at == 2:
            values = -values * 2
        data[:, at:at + 2] = values.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return data.reshape(rows, -1)


def dequantized(kind_name: str, data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    from gguf import GGMLQuantizationType, dequantize

    return dequantize(data, GGMLQuantizationType[kind_name]).astype(np.float64).reshape(rows, cols)


def int8_activations(x: np.ndarray) -> np.ndarray:
    """x as the kernel sees it: int8 codes times one scale per 32 (float64)."""
    blocks = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = np.abs(blocks).max(-1, keepdims=True) / np.float32(127)
    inv = np.where(d > 0, 1 / np.where(d > 0, d, 1), 0).astype(np.float32)
    q = np.rint(blocks * inv)
    return (q * d).astype(np.float64).reshape(x.shape)


def linear(kind_name: str, data: np.ndarray, cols: int) -> Q.GgufLinear:
    from gguf import GGMLQuantizationType

    raw = W.raw_from_gguf(data, GGMLQuantizationType[kind_name], [data.shape[0], cols], native=True)
    assert raw.kind == "gguf"
    built = Q.build(raw, "auto", torch.float32)
    assert isinstance(built, Q.GgufLinear) and built.kind == "gguf-" + kind_name.lower()
    return built


@pytest.fixture(scope="module")
def lib():
    found = native.library()
    assert found is not None, f"the GGUF kernel did not build here: {native.why_not()}"
    return found


# (13, 544): a short 8-row tile and 17 blocks a row, whose per-16 sums the kernel pads to 40 (not for
# the K-quants, whose rows are whole 256-value super-blocks).
_LIB = native.library()
VNNI = bool(_LIB is not None and _LIB.llmchat_features() & 2)  # AVX-512 VNNI: vpdpbusd in the groups (rp_block_vnni)
REPACKED = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q8_0"}  # from_file's groups (any AVX2 kernel)
SHAPES = [(kind, shape) for kind in TYPES for shape in [(40, 768)] + ([] if kind.endswith("_K") else [(13, 544)])]


@pytest.mark.parametrize("kind_name,shape", SHAPES)
@pytest.mark.parametrize("tokens", [1, 6])
def test_kernel_computes_the_files_grid_times_int8_activations(lib, kind_name, tokens, shape):
    rows, cols = shape
    data = blocks_of(kind_name, rows, cols, seed=len(kind_name) * 7 + tokens)
    w = dequantized(kind_name, data, rows, cols)
    x = np.random.default_rng(tokens).standard_normal((tokens, cols)).astype(np.float32)
    y = linear(kind_name, data, cols)(torch.from_numpy(x), precise=False).numpy()
    exact_activations = int8_activations(x) @ w.T
    scale = np.abs(exact_activations).max()
    assert np.abs(y - exact_activations).max() < 2e-5 * scale  # integer sums exact; fp32 accumulation only
    plain = x.astype(np.float64) @ w.T
    assert np.abs(y - plain).max() < 0.02 * np.abs(plain).max()  # what int8 activations cost


@pytest.mark.parametrize("kind_name", list(TYPES))
@pytest.mark.parametrize("rows", [36, 40])
def test_one_token_and_many_give_the_same_rows(lib, kind_name, rows):
    cols = 512  # 36 rows: not a multiple of the 8-row tile, kept as filed; 40: repacked (4-6 bit types, Q8_0)
    data = blocks_of(kind_name, rows, cols, seed=3)
    lin = linear(kind_name, data, cols)
    assert lin.repacked == (rows % 8 == 0 and kind_name in REPACKED)
    x = torch.randn(5, cols)
    for precise in (False, True):
        many = lin(x, precise=precise)
        for t in range(5):
            one = lin(x[t:t + 1], precise=precise)
            assert torch.allclose(one[0], many[t], rtol=1e-5, atol=1e-5 * float(many.abs().max()))


@pytest.mark.parametrize("kind_name", sorted(REPACKED))
def test_repacked_groups_give_the_files_rows(lib, kind_name):
    """qdot.c's 8-row groups (llmchat_repack) hold the file's codes and scales: embedding rows come back to the
    bit, and products match the file layout's to float rounding for 1-9 tokens, one pass and two."""
    rows, cols = 48, 768
    data = blocks_of(kind_name, rows, cols, seed=31)
    kind = int(__import__("gguf").GGMLQuantizationType[kind_name])
    filed = Q.GgufLinear(torch.from_numpy(data.copy()), torch.tensor([kind, cols, 0]))
    packed = Q.GgufLinear.from_file(torch.from_numpy(data.copy()), kind, cols)
    assert packed.repacked and not filed.repacked and packed.blocks.data_ptr() != filed.blocks.data_ptr()
    ids = torch.tensor([0, 9, 47, 8, 9])
    assert torch.equal(packed.rows(ids), filed.rows(ids))
    assert torch.equal(packed.rows(ids), torch.from_numpy(dequantized(kind_name, data, rows, cols).astype(np.float32))[ids])
    for tokens in (1, 2, 5, 9):
        x = torch.randn(tokens, cols) * torch.where(torch.rand(tokens, cols) < 0.02, 30.0, 1.0)
        for precise in (False, True):
            want = filed(x, precise=precise)
            assert torch.allclose(packed(x, precise=precise), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    saved = packed.state("p.")
    again = Q.GgufLinear.restore(saved, "p.")
    assert again.repacked and torch.equal(again(x), packed(x))


def test_rows_that_do_not_fill_groups_stay_as_filed(lib):
    from gguf import GGMLQuantizationType as T

    assert not Q.GgufLinear.from_file(torch.from_numpy(blocks_of("Q4_0", 20, 512, 1)), int(T.Q4_0), 512).repacked
    assert not Q.GgufLinear.from_file(torch.from_numpy(blocks_of("Q8_0", 20, 512, 1)), int(T.Q8_0), 512).repacked
    assert Q.GgufLinear.from_file(torch.from_numpy(blocks_of("Q8_0", 24, 512, 1)), int(T.Q8_0), 512).repacked
    with pytest.raises(ValueError, match="bytes per row"):  # a repacked flag on rows that are not groups of 8
        Q.GgufLinear(torch.from_numpy(blocks_of("Q4_0", 20, 512, 1)), torch.tensor([int(T.Q4_0), 512, 1]))


@pytest.mark.parametrize("kind_name", list(TYPES))
def test_precise_activations_take_the_int8_rounding_error_away(lib, kind_name):
    """down_proj's two int8 passes (x8, then the remainder x - x8 quantized again on d / 254), in one sweep over
    the weights (on repacked groups joined into one 16-bit activation): ~100x closer to the float product than
    one pass, and one token or many (1-4 activation rows to a tile or tokens to a call, and a tail) give the
    same rows."""
    for rows in (20, 24):  # as filed (two rows apart), and repacked (two passes fused)
        _precise_check(kind_name, rows)


def _precise_check(kind_name: str, rows: int) -> None:
    cols = 512
    data = blocks_of(kind_name, rows, cols, seed=21)
    w = dequantized(kind_name, data, rows, cols)
    lin = linear(kind_name, data, cols)
    x = torch.randn(7, cols) * torch.where(torch.rand(7, cols) < 0.02, 30.0, 1.0)  # SwiGLU-like outliers
    plain = x.double().numpy() @ w.T
    one_pass = lin(x, precise=False).numpy()
    two_pass = lin(x, precise=True).numpy()
    assert np.array_equal(lin(x).numpy(), two_pass)  # a prompt's rows take two passes by default
    scale = np.abs(plain).max()
    assert np.abs(two_pass - plain).max() < np.abs(one_pass - plain).max() / 20
    assert np.abs(two_pass - plain).max() < 2e-4 * scale
    lin.precise = True  # as CpuLlama sets it for down_proj: one token takes two passes too
    for t in range(7):
        alone = lin(x[t:t + 1]).numpy()[0]
        assert np.allclose(alone, two_pass[t], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("kind_name", list(TYPES))
def test_embedding_rows_are_exactly_the_files_values(lib, kind_name):
    rows, cols = 20, 512
    data = blocks_of(kind_name, rows, cols, seed=11)
    w = dequantized(kind_name, data, rows, cols).astype(np.float32)
    ids = torch.tensor([0, 7, 19, 7])
    assert np.array_equal(linear(kind_name, data, cols).rows(ids).numpy(), w[ids.numpy()])
    raw = W.raw_from_gguf(data, __import__("gguf").GGMLQuantizationType[kind_name], [rows, cols], native=True)
    assert np.array_equal(raw.dequantize().numpy(), w)  # quant = none starts from the same values


def test_fused_and_rows_picked_like_any_matrix(lib):
    """q/k/v fusion and the q/k row permutation work on block rows: same result as separate matmuls."""
    cols = 512
    parts = [W.raw_from_gguf(blocks_of("Q4_K", rows, cols, seed=rows), __import__("gguf").GGMLQuantizationType.Q4_K,
                             [rows, cols], native=True) for rows in (32, 16, 16)]
    order = torch.randperm(32)
    parts[0] = W._pick_rows(parts[0], order)
    fused = Q.build(Q.fuse(parts), "auto", torch.float32)
    x = torch.randn(3, cols)
    separate = torch.cat([Q.build(p, "auto", torch.float32)(x) for p in parts], dim=1)
    assert torch.equal(fused(x), separate)


def test_the_portable_build_gives_the_same_numbers(tmp_path):
    """Without AVX2 (another CPU, or -march that lacks it) the plain C loops run: same results."""
    cc = native.compiler()
    assert cc, "no C compiler on this machine"
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("the portable loops are what runs on this CPU already")
    portable = tmp_path / "qdot-portable.so"
    subprocess.run([cc, "-O2", "-march=x86-64", "-fopenmp", "-shared", "-fPIC", "-std=c11", "-o", str(portable),
                    str(native.SOURCE), "-lm"], check=True)
    import ctypes

    plain = ctypes.CDLL(str(portable))
    fast = native.library()
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    plain.llmchat_qmatmul.argtypes = [ctypes.c_int, ptr, i64, i64, ptr, i64, ptr]
    plain.llmchat_qmatmul_precise.argtypes = plain.llmchat_qmatmul.argtypes
    plain.llmchat_rp_row_bytes.restype = i64
    plain.llmchat_rp_row_bytes.argtypes = [ctypes.c_int, i64]
    assert plain.llmchat_rp_row_bytes(2, 512) == -1  # no repacked layout there: GgufLinear keeps the file's
    from gguf import GGMLQuantizationType

    for kind_name in TYPES:
        rows, cols = 24, 512
        data = np.ascontiguousarray(blocks_of(kind_name, rows, cols, seed=5))
        for tokens in (1, 3):
            x = np.random.default_rng(tokens).standard_normal((tokens, cols)).astype(np.float32)
            for fn in ("llmchat_qmatmul", "llmchat_qmatmul_precise"):
                out = [np.zeros((tokens, rows), dtype=np.float32) for _ in range(2)]
                for lib_, y in ((plain, out[0]), (fast, out[1])):
                    assert getattr(lib_, fn)(int(GGMLQuantizationType[kind_name]), data.ctypes.data, rows, cols,
                                             x.ctypes.data, tokens, y.ctypes.data) == 0
                assert np.allclose(out[0], out[1], rtol=1e-5, atol=1e-5 * np.abs(out[1]).max()), (kind_name, fn, tokens)
    for code, dtype in ((1, torch.float16), (30, torch.bfloat16)):  # 16-bit float rows, 200 columns (a tail)
        w = (torch.randn(24, 200) * 0.05).to(dtype)
        data = np.ascontiguousarray(w.view(torch.int16).numpy())
        x = np.random.default_rng(2).standard_normal((3, 200)).astype(np.float32)
        want = x.astype(np.float64) @ w.double().numpy().T
        for lib_ in (plain, fast):
            y = np.zeros((3, 24), dtype=np.float32)
            assert lib_.llmchat_qmatmul(code, data.ctypes.data, 24, 200, x.ctypes.data, 3, y.ctypes.data) == 0
            assert np.allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max()), code


def test_the_vnni_and_avx2_kernels_give_the_same_numbers(lib, tmp_path):
    """Where the CPU has AVX-512 VNNI, the repacked groups multiply with vpdpbusd (rp_block_vnni); the AVX2
    build of the same source (maddubs, -DLLMCHAT_NO_VNNI) must give the same floats, bit for bit: the same
    integer sums, scaled in the same order (Q8_0 to float rounding: without VNNI its one pass takes the sign
    trick on signed codes). One token and a prompt, one pass and two."""
    if not lib.llmchat_features() & 2:
        pytest.skip("no AVX-512 VNNI on this CPU: the AVX2 kernel is the one that runs (the other tests check it)")
    import ctypes

    path = tmp_path / "qdot-avx2.so"
    subprocess.run([native.compiler(), *native.FLAGS, "-DLLMCHAT_NO_VNNI", "-o", str(path), str(native.SOURCE), "-lm"],
                   check=True)
    avx2 = ctypes.CDLL(str(path))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for fn in ("llmchat_qmatmul", "llmchat_qmatmul_precise"):
        getattr(avx2, fn).argtypes = [ctypes.c_int, ptr, i64, i64, ptr, i64, ptr]
    assert avx2.llmchat_features() == 1
    from gguf import GGMLQuantizationType

    for kind_name in sorted(REPACKED):
        rows, cols = 40, 512
        packed = Q.GgufLinear.from_file(torch.from_numpy(blocks_of(kind_name, rows, cols, seed=13)),
                                        int(GGMLQuantizationType[kind_name]), cols)
        assert packed.repacked
        for tokens in (1, 6):
            x = torch.randn(tokens, cols) * torch.where(torch.rand(tokens, cols) < 0.02, 30.0, 1.0)
            for precise, fn in ((False, "llmchat_qmatmul"), (True, "llmchat_qmatmul_precise")):
                y = torch.empty(tokens, rows)
                assert getattr(avx2, fn)(packed.code, packed.blocks.data_ptr(), rows, cols, x.data_ptr(), tokens,
                                         y.data_ptr()) == 0
                if kind_name == "Q8_0":  # AVX2 multiplies its groups otherwise (sign trick, int16): to float rounding
                    assert torch.allclose(packed(x, precise=precise), y, rtol=1e-5, atol=1e-5 * float(y.abs().max()))
                    continue
                assert torch.equal(packed(x, precise=precise), y), (kind_name, tokens, precise)


def test_a_prompt_unpacking_each_group_once_gives_the_same_numbers(lib, tmp_path):
    """A prompt's Q6_K groups are unpacked once into rp_dec blocks (codes, scales) and multiplied with every
    activation row from there; the build that unpacks per 4 rows (-DRP_DECODE=0) must give the same floats,
    bit for bit, for every repacked type, one pass and two, for row counts around the 4-row chunk."""
    import ctypes

    path = tmp_path / "qdot-nodecode.so"
    subprocess.run([native.compiler(), *native.FLAGS, "-DRP_DECODE=0", "-o", str(path), str(native.SOURCE), "-lm"],
                   check=True)
    chunked = ctypes.CDLL(str(path))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for fn in ("llmchat_qmatmul", "llmchat_qmatmul_precise"):
        getattr(chunked, fn).argtypes = [ctypes.c_int, ptr, i64, i64, ptr, i64, ptr]
    from gguf import GGMLQuantizationType

    for kind_name in sorted(REPACKED):
        rows, cols = 24, 768
        packed = Q.GgufLinear.from_file(torch.from_numpy(blocks_of(kind_name, rows, cols, seed=17)),
                                        int(GGMLQuantizationType[kind_name]), cols)
        assert packed.repacked
        for tokens in (2, 3, 5, 11):
            x = torch.randn(tokens, cols) * torch.where(torch.rand(tokens, cols) < 0.02, 30.0, 1.0)
            for precise, fn in ((False, "llmchat_qmatmul"), (True, "llmchat_qmatmul_precise")):
                y = torch.full((tokens, rows), float("nan"))
                assert getattr(chunked, fn)(packed.code, packed.blocks.data_ptr(), rows, cols, x.data_ptr(), tokens,
                                            y.data_ptr()) == 0
                assert torch.equal(packed(x, precise=precise), y), (kind_name, tokens, precise)


def test_without_a_compiler_gguf_weights_run_on_torch_kernels(tmp_path):
    """CC names no compiler: the library is not built, the reason is one line, and the GGUF blocks
    are read the torch way (int4 groups, int8 groups, int8 channels)."""
    code = ("from llmchat.model.cpu import native, weights as W; import numpy as np; from gguf import GGMLQuantizationType as T;"
            "print(native.library() is None); print(native.why_not());"
            "print(W.raw_from_gguf(np.zeros((4, 18), np.uint8), T.Q4_0, [4, 32]).kind)")
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    none, why, kind = done.stdout.strip().splitlines()
    assert none == "True" and why.startswith(f"CC={tmp_path / 'no-such-cc'} is not a command here"), why
    assert kind == "int4"
    env = dict(os.environ, LLMCHAT_NATIVE="0")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.split() [:2] == ["True", "LLMCHAT_NATIVE=0"] and done.stdout.split()[-1] == "int4"


def test_a_busy_neighbour_is_seen_and_takes_a_thread_away():
    """bench/busy.py: spinning OpenMP threads beside a busy process are ~30x slower; llmchat
    counts the running processes and uses one thread per free core."""
    from llmchat.model.cpu import threads

    assert threads.choose(2, 0) == 2 and threads.choose(2, 1) == 1 and threads.choose(2, 5) == 1
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert threads.busy_others() >= 1
    finally:
        hog.kill()
        hog.wait()
    env = dict(os.environ, LLMCHAT_THREADS="1")
    code = "from llmchat.model.cpu.threads import ThreadPolicy; print(ThreadPolicy().fixed)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "1"


def test_a_thread_is_taken_away_only_when_two_checks_agree(monkeypatch):
    """A process runnable for an instant (one reading) leaves both threads; a reading that asks for
    fewer is checked again at the next call, and two agreeing readings take one away; the first free
    reading gives it back. Between them the load is read every CHECK_EVERY calls."""
    from llmchat.model.cpu import threads

    monkeypatch.delenv("LLMCHAT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    policy = threads.ThreadPolicy()
    policy.cores = 2
    readings, read_at = iter([1, 0, 1, 1, 0]), []
    monkeypatch.setattr(threads, "busy_others", lambda: read_at.append(policy.calls) or next(readings))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen = {}
        for call in range(1, 4 + 2 * threads.CHECK_EVERY):
            policy.tick()
            seen[call] = torch.get_num_threads()
        every = threads.CHECK_EVERY
        assert read_at == [1, 2, 2 + every, 3 + every, 3 + 2 * every]
        assert seen[1] == seen[2] == seen[2 + every] == 2 and seen[3 + every] == 1 and seen[2 + 2 * every] == 1
        assert seen[3 + 2 * every] == 2
    finally:
        torch.set_num_threads(before)
