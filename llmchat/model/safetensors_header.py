"""The headers of .safetensors files: checked before a loader maps them, and counted without reading data.

A zero-byte or truncated file, a header length beyond the file, a header that is not JSON, or a
tensor whose data lies outside the file is rejected with one line naming the file (exit 4).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import ModelRejected
from ..hf_folder import weight_files

MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def check_safetensors(path: Path) -> None:
    def fail(what: str) -> ModelRejected:
        return ModelRejected(f"{path} is not a valid safetensors file: {what}",
                             "the file is corrupt or incomplete; download it again")

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise fail(f"it has {size} bytes, too few for a header")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise fail(f"the header claims {length} bytes, the file has {size}")
            raw = fh.read(length)
    except OSError as exc:
        raise ModelRejected(f"cannot read {path}: {exc.strerror}", "check the file and its permissions") from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(f"the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise fail("the header is not a JSON object")
    data_size = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise fail(f"tensor {str(name)[:64]!r} lies outside the file (truncated?)")


def safetensors_parameters(folder: Path) -> tuple[int, str | None]:
    """Parameter count and stored dtype of a checkpoint, from its safetensors headers alone."""
    total, dtype = 0, None
    for file in weight_files(folder):
        with open(file, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
            dtype = dtype or info["dtype"]
    return total, dtype
