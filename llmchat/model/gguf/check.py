"""Pre-flight check of a GGUF file's header before gguf/transformers parse it.

A corrupt or hostile file must fail fast with one line (exit 4), never hang or allocate without
bound. We walk the header with explicit bounds: every count and length is checked against the
file size before it is used, and every tensor's data must lie inside the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ...errors import ModelRejected

MAGIC = b"GGUF"
# GGUF metadata value types → fixed size in bytes (8 = string, 9 = array are variable).
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 8


class _Reader:
    def __init__(self, fh, size: int, path: Path):
        self.fh, self.size, self.path = fh, size, path

    def fail(self, what: str) -> ModelRejected:
        return ModelRejected(f"{self.path} is not a valid GGUF file: {what}",
                             "the file is corrupt or truncated; download it again")

    def read(self, n: int) -> bytes:
        if n < 0 or self.fh.tell() + n > self.size:
            raise self.fail(f"a field at byte {self.fh.tell()} runs past the end of the file ({self.size} bytes)")
        return self.fh.read(n)

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def string(self) -> bytes:
        return self.read(self.u64())

    def skip_value(self, vtype: int, depth: int = 0) -> None:
        if vtype in _FIXED:
            self.read(_FIXED[vtype])
        elif vtype == _STRING:
            self.string()
        elif vtype == _ARRAY and depth == 0:
            item_type, count = self.u32(), self.u64()
            if item_type in _FIXED:
                self.read(_FIXED[item_type] * count)
            elif item_type in (_STRING,):
                remaining = self.size - self.fh.tell()
                if count * 8 > remaining:
                    raise self.fail(f"an array claims {count} strings, more than the file can hold")
                for _ in range(count):
                    self.string()
            else:
                raise self.fail(f"unsupported array item type {item_type}")
        else:
            raise self.fail(f"unknown metadata value type {vtype}")


def check_gguf(path: str | os.PathLike) -> dict:
    """Validate the header and tensor table; returns {'version', 'tensors', 'metadata_keys', 'pre'}
    ('pre': llama.cpp's pre-tokenizer name, read on the way: gguf-py's GGUFReader takes 4 s to
    build every field of a 98 MB file for this one string)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise ModelRejected(f"cannot read {path}: {exc.strerror}", "check the path and permissions") from None
    with fh:
        r = _Reader(fh, size, path)
        if size < 24 or r.read(4) != MAGIC:
            raise r.fail("it does not start with the GGUF magic bytes")
        version = r.u32()
        if version not in (2, 3):
            raise r.fail(f"unsupported version {version}")
        n_tensors, n_kv = r.u64(), r.u64()
        # Each KV needs at least 8+1+4 bytes and each tensor info at least 8+1+4+8+4+8.
        if n_kv * 13 > size or n_tensors * 33 > size:
            raise r.fail(f"it claims {n_tensors} tensors and {n_kv} metadata entries, more than {size} bytes can hold")
        alignment, pre = 32, None
        for _ in range(n_kv):
            key = r.string()
            vtype = r.u32()
            if key == b"tokenizer.ggml.pre" and vtype == 8:
                pre = r.string().decode("utf-8", "replace")
            elif key == b"general.alignment" and vtype == 4:
                alignment = r.u32()
                if alignment == 0 or alignment & (alignment - 1) or alignment > 1 << 20:
                    raise r.fail(f"absurd alignment {alignment}")
            else:
                r.skip_value(vtype)
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.u32()
            if n_dims == 0 or n_dims > _MAX_DIMS:
                raise r.fail(f"tensor {name[:64]!r} has {n_dims} dimensions")
            dims = [r.u64() for _ in range(n_dims)]
            ttype, offset = r.u32(), r.u64()
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            except (ValueError, KeyError):
                raise r.fail(f"tensor {name[:64]!r} has unknown type {ttype}") from None
            elements = 1
            for d in dims:
                elements *= d
                if elements > size * 64:
                    raise r.fail(f"tensor {name[:64]!r} claims {dims}, far more than the file holds")
            if elements % block:
                raise r.fail(f"tensor {name[:64]!r} has {elements} elements, not a multiple of its block {block}")
            tensors.append((name, offset, elements // block * type_size))
        start = r.fh.tell()
        data_start = (start + alignment - 1) // alignment * alignment
        for name, offset, nbytes in tensors:
            if data_start + offset + nbytes > size:
                raise r.fail(f"tensor {name[:64].decode('utf-8', 'replace')!r} lies past the end of the file "
                             f"(needs {data_start + offset + nbytes} bytes, the file has {size}); it is truncated")
    return {"version": version, "tensors": n_tensors, "metadata_keys": n_kv, "pre": pre}
