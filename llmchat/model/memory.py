"""Will the model fit? An estimate made before loading, so that a model too big for the device is
refused with the numbers (exit 6) instead of swapping the machine to a halt or dying mid-load.

It counts the weights at the chosen dtype (parameter count from the safetensors headers) plus the
KV cache of the first KV_TOKENS tokens, against the memory free now. It is an estimate: --force
skips it. Devices where free memory cannot be read (MPS, non-Linux CPUs) are not checked.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OutOfMemory
from .safetensors_header import safetensors_parameters

KV_TOKENS = 4096
GIB = 1024 ** 3


def free_bytes(device: str) -> int | None:
    """Free memory on the device: CUDA from the driver, CPU from /proc/meminfo (MemAvailable)."""
    if device.startswith("cuda"):
        import torch

        return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    if device == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


def kv_bytes(config: dict, context: int, itemsize: int) -> int:
    text = config.get("text_config") or config
    layers = text.get("num_hidden_layers") or 0
    heads = text.get("num_attention_heads") or 1
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or (text.get("hidden_size") or 0) // heads
    return 2 * layers * kv_heads * head_dim * min(context, KV_TOKENS) * itemsize


def check_checkpoint_fits(alias: str, folder: Path, config: dict, context: int, dtype, device: str) -> None:
    """A safetensors checkpoint at `dtype` (weights + KV cache) against the device's free memory."""
    itemsize = dtype.itemsize if hasattr(dtype, "itemsize") else 4
    name = str(dtype).removeprefix("torch.")
    check_memory_fits(alias, safetensors_parameters(folder)[0] * itemsize, kv_bytes(config, context, itemsize), name, device)


def check_memory_fits(alias: str, weights: int, kv: int, what: str, device: str) -> None:
    """Refuse (OutOfMemory) when weights + KV cache clearly exceed the device's free memory."""
    free = free_bytes(device)
    if free is None:
        return
    if weights + kv > free:
        raise OutOfMemory(
            f"{alias} needs about {(weights + kv) / GIB:.1f} GiB in {what} (weights {weights / GIB:.1f} GiB + KV cache "
            f"for {KV_TOKENS} tokens or fewer {kv / GIB:.1f} GiB); {device} has {free / GIB:.1f} GiB free",
            "try --dtype bfloat16, --quant int4, a smaller model, --device auto-split, or --force to load anyway")
