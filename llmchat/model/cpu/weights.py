"""Weights for the CPU forward pass (llama.py): read from a GGUF file or a safetensors folder, packed once, cached.

- GGUF, with the compiled kernel (native.py, qdot.c): the block types it takes (Q4_0, Q4_1, Q5_0,
  Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) stay the file's bytes (`Raw` kind "gguf"). After the q/k rows are
  un-permuted and the fused matrices (q|k|v, gate|up) concatenated, `GgufLinear.from_file` repacks
  the 4-6 bit types into qdot.c's 8-row interleaved groups (same codes and scales, in the order
  the kernel reads them; `LLMCHAT_REPACK=0` keeps the file's layout). Embedding rows stay as filed.
  F16 / BF16 tensors stay 16-bit (`GgufLinear.half`).
- GGUF, without it (no compiler, `LLMCHAT_NATIVE=0`): Q4_0 / Q4_1 / Q4_K blocks become int4 groups
  and Q8_0 blocks int8 groups *as they are* (the codes and scales are copied, never re-quantized);
  other types are dequantized by gguf-py.
- The q/k rows are un-permuted as transformers does (llama.cpp stores them interleaved for its RoPE).
- safetensors: the float tensors (float16 / bfloat16 kept 16-bit on the kernel), quantized only
  when `quant` asks for it.

The packed result is cached as one safetensors file (read into one buffer on warm starts, every
tensor a view of it: no GGUF parse, no packing, no repacking, no copy). Its name carries
PACK_FORMAT, the kernel it is laid out for, the torch version and CPU capability, because torch's
int4 packed layout depends on both.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ...hf_folder import PACKED_PREFIX, weight_files
from ...paths import atomic_file
from . import quant as Q
from .llama import CpuLlama, Layer, Rows, Shape, Unsupported, interleave_order, rope_inv_freq

PACK_FORMAT = 9  # 7: GGUF blocks kept as gguf_blocks for the compiled kernel; 8: repacked in groups of 8 rows, 16-bit floats kept; 9: Q8_0 repacked on AVX2 too

_GGUF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
               "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


# ---------------------------------------------------------------------------- readers → {hf name: Raw}

def read_gguf(path: Path, config: dict, native: bool | None = None) -> dict[str, Q.Raw]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field else ""
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    raws: dict[str, Q.Raw] = {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name)
        if name is None:
            continue
        raw = raw_from_gguf(tensor.data, tensor.tensor_type, [int(n) for n in reversed(tensor.shape)], native)
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
            raw = _unpermute(raw, heads if "q_proj" in name else kv_heads)
        raws[name] = raw
    return raws


def raw_from_gguf(data: np.ndarray, kind, shape: list[int], native: bool | None = None) -> Q.Raw:
    """One GGUF tensor (its bytes as gguf-py maps them, its type, its [rows, cols] shape) as a Raw.

    With the compiled kernel (`native`, by default: when native.library() loads), the block types
    it takes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) stay the file's bytes, kind "gguf". Without it:
    Q4_0, Q4_1 and Q4_K blocks are int4 groups of 32 and Q8_0 blocks int8 groups of 32, copied
    as they are. F32/F16 stay float. Every other block type (Q5_K, Q6_K, IQ…) is dequantized by
    gguf-py and marked `requantize`: the CPU kernels cannot take those grids, so `quant = auto`
    holds them as int8 per channel (finer than their 5–6 bits) rather than as float32.
    """
    from gguf import GGMLQuantizationType as T, dequantize

    if kind in (T.F32, T.F16):
        return Q.Raw("float", values=torch.from_numpy(np.array(data)).reshape(shape))
    if kind == T.BF16:  # kept in its 16 bits (its bytes viewed as bfloat16)
        return Q.Raw("float", values=torch.from_numpy(np.ascontiguousarray(data).view(np.int16).copy()).view(torch.bfloat16).reshape(shape))
    rows = shape[0]
    if native is None:
        from . import native as N

        native = N.library() is not None
    if native and int(kind) in Q.GGUF_TYPES and len(shape) == 2 and shape[1] % Q.GGUF_BLOCK[int(kind)] == 0:
        blocks = torch.from_numpy(np.ascontiguousarray(data).reshape(rows, -1).copy())
        return Q.Raw("gguf", blocks=blocks, gtype=int(kind), cols=shape[1])
    if kind in (T.Q4_0, T.Q4_1, T.Q8_0):
        block = {T.Q4_0: 18, T.Q4_1: 20, T.Q8_0: 34}[kind]
        blocks = np.ascontiguousarray(data).reshape(rows, -1, block)
        d = _f16(blocks[..., 0:2])
        if kind == T.Q8_0:
            return Q.Raw("int8-group", codes=torch.from_numpy(blocks[..., 2:].copy().view(np.int8)).reshape(rows, -1), scale=d)
        qs = blocks[..., 4:] if kind == T.Q4_1 else blocks[..., 2:]
        codes = torch.from_numpy(np.concatenate([qs & 0x0F, qs >> 4], axis=-1)).reshape(rows, -1)
        zero = _f16(blocks[..., 2:4]) + 8 * d if kind == T.Q4_1 else torch.zeros_like(d)
        return Q.Raw("int4", codes=codes, scale=d, zero=zero)
    if kind == T.Q4_K:  # 256 weights: d, dmin, 8 six-bit (scale, min) pairs, 128 bytes of nibbles
        from gguf.quants import Q4_K

        blocks = np.ascontiguousarray(data).reshape(-1, 144)
        d, dmin = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4])
        sc, mins = (torch.from_numpy(a.astype(np.float32)) for a in Q4_K.get_scale_min(blocks[:, 4:16].copy()))
        qs = blocks[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
        codes = torch.from_numpy((qs & 0x0F).reshape(rows, -1))
        scale = (d[:, None] * sc).reshape(rows, -1)  # w = scale * q - dmin * min, per group of 32
        zero = 8 * scale - (dmin[:, None] * mins).reshape(rows, -1)
        return Q.Raw("int4", codes=codes, scale=scale, zero=zero)
    values = dequantize(np.asarray(data), kind).astype(np.float32)
    return Q.Raw("float", values=torch.from_numpy(values.reshape(shape)), requantize=kind not in (T.BF16,))


def _f16(two_bytes: np.ndarray) -> torch.Tensor:
    """fp16 values stored as pairs of bytes in the last axis, as fp32."""
    return torch.from_numpy(two_bytes.copy().view(np.float16)[..., 0].astype(np.float32))


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _GGUF_NAMES:
        return f"model.layers.{parts[1]}.{_GGUF_NAMES[parts[2]]}.{parts[3]}"
    return None


def _unpermute(raw: Q.Raw, n_head: int) -> Q.Raw:
    """transformers' reverse_permute_weights, applied to whole rows (blocks run along the input)."""
    rows = raw.shape[0] if raw.values is None or raw.values.dim() > 1 else raw.values.shape[0]  # (a bias is 1-d)
    dim = rows // n_head // 2
    return _pick_rows(raw, torch.arange(rows).reshape(n_head, dim, 2).transpose(1, 2).reshape(rows))


def _pick_rows(raw: Q.Raw, order: torch.Tensor) -> Q.Raw:
    pick = lambda t: None if t is None else t[order].contiguous()  # noqa: E731
    return Q.Raw(raw.kind, values=pick(raw.values), codes=pick(raw.codes), scale=pick(raw.scale), zero=pick(raw.zero),
                 requantize=raw.requantize, blocks=pick(raw.blocks), gtype=raw.gtype, cols=raw.cols)


def read_safetensors(folder: Path) -> dict[str, Q.Raw]:
    from safetensors import safe_open

    raws: dict[str, Q.Raw] = {}
    for file in weight_files(folder):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                raws[name] = Q.Raw("float", values=f.get_tensor(name))
    return raws


# ---------------------------------------------------------------------------- assembly

def assemble(config: dict, raws: dict[str, Q.Raw], quant: str, dtype: torch.dtype) -> CpuLlama:
    """A CpuLlama from raw weights named as in transformers' Llama checkpoints."""
    shape = Shape.from_config(config)
    inv_freq = rope_inv_freq(config, shape.head_dim)

    def take(name: str) -> Q.Raw:
        if name not in raws:
            raise Unsupported(f"tensor {name} is missing")
        return raws.pop(name)

    def bias(name: str) -> torch.Tensor | None:
        raw = raws.pop(name, None)
        return None if raw is None else raw.dequantize() if raw.kind != "float" else raw.values.float()

    def vector(name: str) -> torch.Tensor:
        return take(name).values.float().contiguous()

    def fused(prefix: str, names: tuple[str, ...]):
        parts = [take(f"{prefix}.{n}.weight") for n in names]
        biases = [bias(f"{prefix}.{n}.bias") for n in names]
        if names[0] == "q_proj":  # RoPE pairs side by side (see llama._rotate)
            for j, heads in ((0, shape.heads), (1, shape.kv_heads)):
                order = interleave_order(parts[j].shape[0], heads)
                parts[j] = _pick_rows(parts[j], order)
                biases[j] = None if biases[j] is None else biases[j][order]
        one = Q.fuse(parts)
        if one is not None and all(b is None for b in biases):
            return Q.build(one, quant, dtype)
        if one is not None and all(b is not None for b in biases):
            return Q.build(one, quant, dtype, bias=torch.cat(biases))
        return tuple(Q.build(p, quant, dtype, bias=b) for p, b in zip(parts, biases))

    layers = []
    for i in range(shape.layers):
        p = f"model.layers.{i}"
        layers.append(Layer(
            attn_norm=vector(f"{p}.input_layernorm.weight"),
            qkv=fused(f"{p}.self_attn", ("q_proj", "k_proj", "v_proj")),
            o=Q.build(take(f"{p}.self_attn.o_proj.weight"), quant, dtype, bias=bias(f"{p}.self_attn.o_proj.bias")),
            mlp_norm=vector(f"{p}.post_attention_layernorm.weight"),
            gate_up=fused(f"{p}.mlp", ("gate_proj", "up_proj")),
            down=Q.build(take(f"{p}.mlp.down_proj.weight"), quant, dtype, bias=bias(f"{p}.mlp.down_proj.bias"))))
        _check_widths(layers[-1], shape, config, i)
    head_raw = raws.pop("lm_head.weight", None)
    if "model.embed_tokens.weight" not in raws and head_raw is not None and config.get("tie_word_embeddings"):
        raws["model.embed_tokens.weight"], head_raw = head_raw, None  # a tied pair saved under the head's name
    embed_raw = take("model.embed_tokens.weight")
    tied = head_raw is None
    head = Q.build(embed_raw if tied else head_raw, quant, dtype, head=True)
    embed = _rows(embed_raw, head if tied else None, quant, dtype)
    norm = vector("model.norm.weight")
    left = sorted(name for name in raws if not name.endswith("rotary_emb.inv_freq"))
    if left:  # a tensor this forward pass would silently ignore: not a plain Llama shape
        raise Unsupported(f"unexpected tensor {left[0]}" + (f" (+{len(left) - 1} more)" if len(left) > 1 else ""))
    return CpuLlama(shape, inv_freq, embed, layers, norm, head, quant, dtype)


def _check_widths(layer: Layer, shape: Shape, config: dict, index: int) -> None:
    """The fused matmuls must have the widths the config promises (a wrong head count would
    otherwise fail at the first forward pass)."""
    qkv = sum(lin.out_features for lin in layer.qkv) if isinstance(layer.qkv, tuple) else layer.qkv.out_features
    expected = (shape.heads + 2 * shape.kv_heads) * shape.head_dim
    gate_up = sum(lin.out_features for lin in layer.gate_up) if isinstance(layer.gate_up, tuple) else layer.gate_up.out_features
    if qkv != expected or layer.o.out_features != shape.hidden or layer.down.out_features != shape.hidden or \
            gate_up != 2 * config.get("intermediate_size", gate_up // 2):
        raise Unsupported(f"layer {index}: weight sizes do not match config.json")


def _rows(raw: Q.Raw, tied_head, quant: str, dtype: torch.dtype) -> Rows:
    if raw.kind == "gguf" and quant != "none":
        if isinstance(tied_head, Q.GgufLinear):
            return Rows(grouped=tied_head)
        return Rows(grouped=Q.GgufLinear(raw.blocks, torch.tensor([raw.gtype, raw.cols, 0])))  # rows only: as filed
    if raw.kind == "int4" and quant != "none":
        return Rows(grouped=Q.Int4Rows(raw.codes.to(torch.uint8).contiguous(), raw.scale.float().contiguous(),
                                       raw.zero.float().contiguous()))
    if raw.kind == "int8-group" and quant != "none":
        if isinstance(tied_head, Q.Int8GroupLinear):
            return Rows(grouped=tied_head)
        return Rows(grouped=Q.Int8GroupLinear.from_codes(raw.codes, raw.scale))
    if quant == "auto" and Q.half_kernel(raw):  # 16-bit rows, widened when looked up
        return Rows(grouped=tied_head if isinstance(tied_head, Q.GgufLinear) else Q.GgufLinear.half(raw.values))
    if isinstance(tied_head, Q.FloatLinear) and tied_head.weight.dtype == (dtype if quant == "none" else torch.float32):
        return Rows(table=tied_head.weight)
    return Rows(table=raw.dequantize().to(dtype if quant == "none" else torch.float32).contiguous())


# ---------------------------------------------------------------------------- the packed cache

def pack_name(quant: str, dtype: torch.dtype, config: dict) -> str:
    """The cache file name. torch's int4 layout depends on torch and the CPU, and the packed model
    bakes in config.json's shape and RoPE, so all of them are in the key; `pack_prefix` is the
    part shared by every version of this (quant, dtype) pair, so that stale ones can be removed."""
    from . import native

    lib = native.library()  # what the packing is for (the VNNI and AVX2 builds lay out the same groups; kept apart all the same)
    kernel = ("qdot" + ("-rp" if Q.REPACK else "") + ("-vnni" if lib.llmchat_features() & 2 else "")) if lib else "torch"
    key = (f"{PACK_FORMAT}|{kernel}|{torch.__version__}|{torch.backends.cpu.get_cpu_capability()}|"
           f"{json.dumps(config, sort_keys=True)}")
    return f"{pack_prefix(quant, dtype)}{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def pack_prefix(quant: str, dtype: torch.dtype) -> str:
    return f"{PACKED_PREFIX}{quant}-{str(dtype).removeprefix('torch.')}-"


def save(model: CpuLlama, path: Path) -> None:
    """Write the packed model atomically (temp file in the same folder, then rename)."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, object] = {}

    def put(prefix: str, linear) -> None:
        if isinstance(linear, tuple):
            layout[prefix] = [lin.kind for lin in linear]
            for j, lin in enumerate(linear):
                tensors.update(lin.state(f"{prefix}.{j}."))
        else:
            layout[prefix] = linear.kind
            tensors.update(linear.state(prefix + "."))

    for i, layer in enumerate(model.layers):
        tensors[f"l{i}.attn_norm"], tensors[f"l{i}.mlp_norm"] = layer.attn_norm, layer.mlp_norm
        for part in ("qkv", "o", "gate_up", "down"):
            put(f"l{i}.{part}", getattr(layer, part))
    put("head", model.head)
    tensors["norm"], tensors["inv_freq"] = model.norm, model.inv_freq
    if model.embed.table is not None:
        embed = "shared-float" if isinstance(model.head, Q.FloatLinear) and model.embed.table is model.head.weight else "table"
        if embed == "table":
            tensors["embed"] = model.embed.table
    elif isinstance(model.embed.grouped, Q.GgufLinear) and model.embed.grouped is not model.head:
        embed = "gguf"
        tensors.update(model.embed.grouped.state("embed."))
    elif isinstance(model.embed.grouped, Q.Int4Rows):
        embed = "int4rows"
        tensors.update(model.embed.grouped.state("embed."))
    else:
        embed = "head" if model.embed.grouped is model.head else "grouped"
        if embed == "grouped":
            tensors.update(model.embed.grouped.state("embed."))
    meta = {"layout": layout, "embed": embed, "shape": model.shape.__dict__, "quant": model.quant,
            "dtype": str(model.dtype).removeprefix("torch.")}
    _write_aligned(path, {name: t.contiguous() for name, t in tensors.items()}, {"llmchat": json.dumps(meta)})


_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int8: "I8",
           torch.uint8: "U8", torch.int32: "I32", torch.int64: "I64"}
_ALIGN = 64  # the packed kernels use aligned vector loads: an int8 matrix off a 64-byte boundary segfaults


def _write_aligned(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A safetensors file whose every tensor starts on a 64-byte boundary (padding entries fill
    the gaps; any safetensors reader still opens it), written to a temp name and renamed."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset, order = 0, []
    for n, (name, t) in enumerate(tensors.items()):
        pad = -offset % _ALIGN
        if pad:
            header[f"_pad.{n}"] = {"dtype": "U8", "shape": [pad], "data_offsets": [offset, offset + pad]}
            order.append(bytes(pad))
            offset += pad
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        order.append(t)
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % _ALIGN)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little") + text)
        for item in order:
            fh.write(item if isinstance(item, bytes) else item.reshape(-1).view(torch.uint8).numpy().tobytes())


def _read_aligned(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read the file into one 64-byte-aligned buffer; every tensor is a view of it (no copy)."""
    by_name = {v: k for k, v in _DTYPES.items()}
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        buffer = torch.empty(os.fstat(fh.fileno()).st_size - 8 - size, dtype=torch.uint8)
        if fh.readinto(memoryview(buffer.numpy())) != buffer.numel():
            raise ValueError("truncated")
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        if name.startswith("_pad."):
            continue
        start, end = entry["data_offsets"]
        if start % _ALIGN or not 0 <= start <= end <= buffer.numel():
            raise ValueError(f"bad offsets for {name}")
        tensors[name] = buffer[start:end].view(by_name[entry["dtype"]]).reshape(entry["shape"])
    return tensors, metadata


def restore(path: Path) -> CpuLlama:
    tensors, metadata = _read_aligned(path)
    meta = json.loads(metadata["llmchat"])

    def get(prefix: str):
        kind = meta["layout"][prefix]
        if isinstance(kind, list):
            return tuple(Q.linear_class(k).restore(tensors, f"{prefix}.{j}.") for j, k in enumerate(kind))
        return Q.linear_class(kind).restore(tensors, prefix + ".")

    shape = Shape(**meta["shape"])
    layers = [Layer(attn_norm=tensors[f"l{i}.attn_norm"], qkv=get(f"l{i}.qkv"), o=get(f"l{i}.o"),
                    mlp_norm=tensors[f"l{i}.mlp_norm"], gate_up=get(f"l{i}.gate_up"), down=get(f"l{i}.down"))
              for i in range(shape.layers)]
    head = get("head")
    embed = {"shared-float": lambda: Rows(table=head.weight), "table": lambda: Rows(table=tensors["embed"]),
             "head": lambda: Rows(grouped=head),
             "grouped": lambda: Rows(grouped=Q.Int8GroupLinear.restore(tensors, "embed.")),
             "gguf": lambda: Rows(grouped=Q.GgufLinear.restore(tensors, "embed.")),
             "int4rows": lambda: Rows(grouped=Q.Int4Rows.restore(tensors, "embed."))}[meta["embed"]]()
    return CpuLlama(shape, tensors["inv_freq"], embed, layers, tensors["norm"], head, meta["quant"],
                     getattr(torch, meta["dtype"]))
