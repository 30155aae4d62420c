"""Loading onto llmchat's own CPU forward pass (llama.py), with the packed-weight cache.

A GGUF source is read by gguf-py and packed once (its Q4_x / Q8_0 blocks kept as they are); a
safetensors folder is read directly (mmap) and, under `quant = int4 | int8`, quantized once. The
packed model is cached next to the GGUF conversion (or under $XDG_CACHE_HOME/llmchat/packed/), so a
warm start reads one file and runs: no GGUF parse, no transformers model class, no float copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ...config.registry import ModelSpec
from ...errors import ModelRejected, first_line
from ...hf_folder import weight_files
from ...paths import cache_dir
from ..gguf.convert import gguf_file
from ..progress import Progress
from .llama import Shape, Unsupported


def load_cpu(spec: ModelSpec, folder: Path, config: dict, quant: str, dtype, progress: Progress, force: bool,
             context: int):
    """(CpuLlama, packed-now?, None) or (None, False, why) when this model needs transformers' code."""
    model, packed, why = _load_cpu(spec, folder, config, quant, dtype, progress, force, context)
    if model is not None and spec.prompt_passes is not None:
        model.prompt_passes = spec.prompt_passes
    return model, packed, why


def _load_cpu(spec: ModelSpec, folder: Path, config: dict, quant: str, dtype, progress: Progress, force: bool,
              context: int):
    try:
        from .llama import rope_inv_freq

        rope_inv_freq(config, Shape.from_config(config).head_dim)
    except Unsupported as exc:
        return None, False, str(exc)
    except (KeyError, TypeError, ValueError) as exc:
        return None, False, f"config.json: {first_line(exc)}"
    from . import weights as W

    gguf = spec.source in ("gguf", "package")
    if not gguf and quant in ("auto", "none"):
        target = None  # the safetensors files are already mmap-able floats: nothing to cache
    else:
        target = (folder if gguf else _packed_dir(folder)) / W.pack_name(quant, dtype, config)
    if not force:
        _check_memory(spec, folder, config, context, target, gguf, quant)
    if target is not None and target.is_file():
        try:
            return W.restore(target), False, None
        except Exception:  # an unreadable cache is rebuilt, never trusted
            target.unlink(missing_ok=True)
    message = (f"packing {spec.alias} weights ({quant}; once, cached afterwards)" if target is not None
               else f"loading {spec.alias}")
    with progress.step(message):
        try:
            raws = W.read_gguf(gguf_file(spec), config) if gguf else W.read_safetensors(folder)
            model = W.assemble(config, raws, quant, dtype)
        except Unsupported as exc:
            return None, False, str(exc)
        except (ValueError, KeyError, RuntimeError, IndexError, TypeError) as exc:
            raise ModelRejected(f"cannot read the weights of {spec.alias}: {first_line(exc)}",
                                "the files are corrupt or of an unsupported layout; try --quant none") from None
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                W.save(model, target)
            except OSError as exc:  # a full or read-only disk: the model is loaded, only the cache is lost
                progress.note(f"could not cache the packed weights in {target.parent}: {exc.strerror or exc}; "
                              "the next start packs them again")
                target = None
            else:
                for old in target.parent.glob(W.pack_prefix(quant, dtype) + "*.safetensors"):  # older torch, format or config
                    if old != target:
                        old.unlink(missing_ok=True)
    return model, target is not None, None


def _packed_dir(folder: Path) -> Path:
    files = weight_files(folder)
    stamp = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return cache_dir() / "packed" / f"{folder.name}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"


def _check_memory(spec, folder, config, context, target, gguf, quant) -> None:
    from ..memory import check_memory_fits, kv_bytes
    from ..safetensors_header import safetensors_parameters

    if target is not None and target.is_file():
        weights = target.stat().st_size
    elif gguf:  # 4-bit blocks stay 4-bit; other block types become int8 (≤ 2×); none is float32 (~8×)
        weights = gguf_file(spec).stat().st_size * (8 if quant == "none" else 2)
    else:
        weights = safetensors_parameters(folder)[0] * 4
    check_memory_fits(spec.alias, weights, kv_bytes(config, context, 4), "float32 KV cache", "cpu")
