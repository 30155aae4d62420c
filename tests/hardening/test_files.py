"""Hostile files: GGUF headers (fuzzed), safetensors headers, through the real checks and loader."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchat.errors import ModelRejected
from llmchat.model.gguf.check import check_gguf
from llmchat.model.load import load
from llmchat.config.registry import ModelSpec


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory) -> bytes:
    """A small valid GGUF written by the gguf library: metadata of every kind and two tensors."""
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.u32", 7)
    writer.add_float32("test.f32", 0.5)
    writer.add_string("test.string", "hello")
    writer.add_array("test.array", ["a", "bc", "def"])
    writer.add_array("test.ints", [1, 2, 3])
    writer.add_tensor("a", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.add_tensor("b", np.ones(32, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_the_valid_file_passes(small_gguf, tmp_path):
    path = tmp_path / "ok.gguf"
    path.write_bytes(small_gguf)
    assert check_gguf(path)["tensors"] == 2


@pytest.mark.parametrize("mutate, fragment", [
    (lambda b: b[:100], "past the end"),
    (lambda b: b"GGUX" + b[4:], "magic"),
    (lambda b: b[:4] + struct.pack("<I", 99) + b[8:], "version 99"),
    (lambda b: b[:8] + struct.pack("<Q", 2**60) + b[16:], "more than"),
    (lambda b: b[:16] + struct.pack("<Q", 2**40) + b[24:], "more than"),
    (lambda b: b"", "magic"),
])
def test_corrupt_headers_are_rejected_with_a_reason(small_gguf, tmp_path, mutate, fragment):
    path = tmp_path / "bad.gguf"
    path.write_bytes(mutate(small_gguf))
    with pytest.raises(ModelRejected, match=fragment):
        check_gguf(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_headers_never_hang_or_crash(small_gguf, tmp_path, data):
    """Random bytes, or the valid file with a few bytes of its header rewritten: the check either
    accepts or raises ModelRejected — never another exception, never an unbounded read."""
    if data.draw(st.booleans()):
        blob = data.draw(st.binary(max_size=512))
        if data.draw(st.booleans()):
            blob = b"GGUF" + struct.pack("<I", 3) + blob
    else:
        blob = bytearray(small_gguf)
        header_end = min(len(blob), 400)
        for _ in range(data.draw(st.integers(1, 6))):
            at = data.draw(st.integers(0, header_end - 1))
            blob[at] = data.draw(st.integers(0, 255))
        blob = bytes(blob[:data.draw(st.integers(0, len(blob)))]) if data.draw(st.booleans()) else bytes(blob)
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(blob)
    try:
        check_gguf(path)
    except ModelRejected as exc:
        assert str(path) in exc.message


def _broken(tmp_path, tiny, how: str):
    folder = tmp_path / how
    shutil.copytree(tiny["llama"], folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    weights.write_bytes({
        "zero-byte": b"",
        "truncated": data[:len(data) // 2],
        "header-beyond-file": struct.pack("<Q", len(data) * 4) + data[8:],
        "invalid-json": data[:8] + b"{" + b"x" * (length - 1) + data[8 + length:],
    }[how])
    return folder


@pytest.mark.parametrize("how, fragment", [
    ("zero-byte", "too few"), ("truncated", "outside the file"), ("header-beyond-file", "header claims"),
    ("invalid-json", "not valid JSON"),
])
def test_broken_safetensors_are_rejected_naming_the_file(tmp_path, tiny, how, fragment):
    folder = _broken(tmp_path, tiny, how)
    with pytest.raises(ModelRejected, match=fragment) as info:
        load(ModelSpec(alias="x", source="path", location=str(folder)))
    assert str(folder / "model.safetensors") in info.value.message


def test_broken_safetensors_through_the_cli(cli, tmp_path, tiny):
    folder = _broken(tmp_path, tiny, "truncated")
    proc = cli("ask", "-m", str(folder), "hi")
    assert proc.returncode == 4
    line, = proc.stderr.strip().splitlines()
    assert "model.safetensors is not a valid safetensors file" in line and proc.stdout == ""
    assert json.loads((folder / "config.json").read_text())  # nothing was modified
