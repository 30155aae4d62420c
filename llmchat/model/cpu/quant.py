"""Weights kept in the form they are computed in: GGUF blocks, 16-bit floats, float, int4 groups, int8 channels, int8 groups.

- `GgufLinear`: a GGUF tensor's blocks on llmchat's compiled kernel (native.py, qdot.c): int8 activations x the
  file's own grid, repacked at load into 8-row interleaved groups (`from_file`); float16 / bfloat16 weights kept
  in their 16 bits (`half`). This is what `quant = auto` gives on any machine with a C compiler.
- Without the kernel (no compiler, `LLMCHAT_NATIVE=0`): thin wrappers over torch's own packed CPU
  kernels (`_weight_int4pack_mm_for_cpu`, `_weight_int8pack_mm`). torchao's weight-only configs
  were measured first (README, "Performance"): torchao 0.18 has no int4 layout for CPU any more,
  and its int8 weight-only CPU path dequantises at each call (133 µs for a 1536x576 matrix against
  15 µs for the packed kernel), so the kernels are called directly here. They are only fast with
  bfloat16 activations (fp32 ones fall to a reference loop ~40x slower), so such a matmul takes its
  input in bf16 and gives its output back in fp32.

Everything around the matmuls (norms, attention, the residual stream, the KV cache) stays fp32.
Every linear is a callable `(x: [T, in] fp32) -> [T, out] fp32` with `out_features`; the packing
can be saved to and restored from a flat dict of tensors (`_Stored.state()` / `restore()`).
"""

from __future__ import annotations

import os

from dataclasses import dataclass

import torch
import torch.nn.functional as F

GROUP = 32
INT4_INNER_K_TILES = 2


class _Stored:
    """Saving and restoring for the packed-weight cache: `FIELDS` lists (attribute, stored name)
    in constructor order; an optional bias follows them."""

    FIELDS: tuple[tuple[str, str], ...] = ()
    HAS_BIAS = True
    bias: torch.Tensor | None = None

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {prefix + key: getattr(self, attr) for attr, key in self.FIELDS}
        if self.bias is not None:
            out[prefix + "bias"] = self.bias
        return out

    @classmethod
    def restore(cls, tensors: dict, prefix: str):
        args = [tensors[prefix + key] for _, key in cls.FIELDS]
        return cls(*args, tensors.get(prefix + "bias")) if cls.HAS_BIAS else cls(*args)

    def _biased(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.bias if self.bias is not None else y


class FloatLinear(_Stored):
    """A plain matmul in the weight's dtype (fp32 for `quant = none`: exact)."""

    kind = "float"
    FIELDS = (("weight", "weight"),)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        self.weight, self.bias = weight, bias
        self.out_features = weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        y = F.linear(x if x.dtype == w.dtype else x.to(w.dtype), w)
        return self._biased(y if y.dtype == torch.float32 else y.float())


class Int4Linear(_Stored):
    """Weight-only int4 in groups of 32 along the input: w = (q - 8) * scale + zero, q in 0..15.

    That is exactly the grid of GGUF Q4_0 (zero = 0) and Q4_1 (zero = min + 8 * scale), so those
    blocks are repacked, never re-quantized; the scales are stored in bf16, as the kernel wants.
    """

    kind = "int4"
    FIELDS = (("packed", "int4_packed"), ("scales_zeros", "int4_scales_zeros"))

    def __init__(self, packed: torch.Tensor, scales_zeros: torch.Tensor, bias: torch.Tensor | None = None):
        self.packed, self.scales_zeros, self.bias = packed, scales_zeros, bias
        self.out_features = scales_zeros.shape[1]

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                   bias: torch.Tensor | None = None) -> "Int4Linear":
        """codes: [out, in] integers 0..15; scale, zero: [out, in/32] (w = (q - 8) * scale + zero)."""
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), INT4_INNER_K_TILES)
        scales_zeros = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()
        return cls(packed, scales_zeros, bias)

    @classmethod
    def quantize(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "Int4Linear":
        """Asymmetric min-max int4 per group of 32 (for float checkpoints, opt-in)."""
        out, inp = weight.shape
        w = weight.float().reshape(out, inp // GROUP, GROUP)
        lo, hi = w.amin(-1), w.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-10)
        codes = torch.clamp(torch.round((w - lo[..., None]) / scale[..., None]), 0, 15).reshape(out, inp)
        return cls.from_codes(codes, scale, lo + 8 * scale, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._biased(torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.packed, GROUP,
                                                                       self.scales_zeros).float())


class Int8Linear(_Stored):
    """Weight-only int8, one symmetric scale per output channel (for float checkpoints, opt-in)."""

    kind = "int8"
    FIELDS = (("codes", "int8_codes"), ("scales", "int8_scales"))

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        self.codes, self.scales, self.bias = codes, scales, bias
        self.out_features = codes.shape[0]

    @classmethod
    def quantize(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8Linear":
        w = weight.float()
        scale = (w.abs().amax(-1) / 127).clamp(min=1e-10)
        codes = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
        return cls(codes.contiguous(), scale.to(torch.bfloat16), bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._biased(torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.codes, self.scales).float())


def int4_fits(out_features: int, in_features: int) -> bool:
    """torch's int4 packing wants the output size a multiple of 16 and the input of 32."""
    return out_features % 16 == 0 and in_features % GROUP == 0


class Int8GroupLinear(_Stored):
    """int8 with one scale per group of 32 inputs: the grid of GGUF Q8_0 (w = d * q), repacked.

    torch has no grouped int8 kernel, so each group of 32 input columns is one per-channel
    `_weight_int8pack_mm` with that group's scales, and the partial products are summed in fp32.
    (Splitting each code into two 4-bit halves for the int4 kernel was measured too: faster alone,
    no faster inside a decode step, and 37% more bytes — not kept.) `codes` is [in/32, out, 32] so
    that a group's codes are contiguous, and so that an embedding lookup (rows of the same
    matrix) can share the one copy (`rows()`).
    """

    kind = "int8-group"
    FIELDS = (("codes", "int8_group_codes"), ("scales", "int8_group_scales"))

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        self.codes, self.scales, self.bias = codes, scales, bias  # [G, out, 32] int8, [G, out] fp32
        self.out_features = codes.shape[1]
        self._scales_bf16 = scales.to(torch.bfloat16)

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8GroupLinear":
        """codes: [out, in] int8; scale: [out, in/32]."""
        out, inp = codes.shape
        grouped = codes.reshape(out, inp // GROUP, GROUP).permute(1, 0, 2).contiguous()
        return cls(grouped, scale.t().float().contiguous(), bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xb = x.to(torch.bfloat16)
        y = None
        for g in range(self.codes.shape[0]):
            part = torch.ops.aten._weight_int8pack_mm(xb[:, g * GROUP:(g + 1) * GROUP].contiguous(), self.codes[g],
                                                     self._scales_bf16[g])
            y = part.float() if y is None else y.add_(part)
        return self._biased(y)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantized rows (an embedding lookup), exactly d * q in fp32 as GGUF defines it."""
        picked = self.codes[:, ids, :].float() * self.scales[:, ids, None]  # [G, T, 32]
        return picked.permute(1, 0, 2).reshape(len(ids), -1)


class GgufLinear(_Stored):
    """A GGUF tensor's blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), run by the compiled kernel
    (native.py, qdot.c): int8 activations x the file's own grid, never re-quantized.

    `blocks` is [out, row bytes] uint8; `info` is [type, in, repacked]. As the file holds them (repacked 0),
    rows can be picked, permuted and concatenated like any matrix (weights.py does, then `from_file`).
    Repacked (1, `from_file` for the 4-6 bit types and Q8_0, when out is a multiple of 8): every 8 rows are one group
    in qdot.c's interleaved layout (llmchat_repack), the same codes and scales in the order its kernel
    reads them, 1.3-2.5x faster for one token. kind is "gguf-<type>", e.g. "gguf-q8_0".
    """

    FIELDS = (("blocks", "gguf_blocks"), ("info", "gguf_info"))

    def __init__(self, blocks: torch.Tensor, info: torch.Tensor, bias: torch.Tensor | None = None):
        from . import native

        self.blocks, self.info, self.bias = blocks.contiguous(), info, bias
        self.type, self.in_features = int(info[0]), int(info[1])
        self.repacked = len(info) > 2 and bool(info[2])
        self.code = self.type | (RP_FLAG if self.repacked else 0)  # the type code qdot.c takes
        self.out_features = blocks.shape[0]
        self.kind = HALF_TYPES[self.type] if self.type in HALF_TYPES else "gguf-" + GGUF_TYPES[self.type]
        # Two int8 activation passes (qdot.c's llmchat_qmatmul_precise: x8, then the remainder quantized 254x finer:
        # float32's product to rounding) where `precise` is set (CpuLlama: each down_proj, whose SwiGLU input has
        # outliers) and, by default, for rows of many tokens; CpuLlama.forward says which for every call. One pass
        # moves a logit by ~0.1-0.5, enough to decide near ties such as SmolLM2's first answer token to "What is
        # the capital of France?" ("The" 15.2% against "L" 14.0% in float32).
        self.precise = False
        self._lib = native.library()
        if self._lib is None:
            raise RuntimeError(f"the GGUF kernel is not available: {native.why_not()}")
        row_bytes = self._lib.llmchat_rp_row_bytes if self.repacked else self._lib.llmchat_row_bytes
        if row_bytes(self.type, self.in_features) != blocks.shape[1] or self.repacked and self.out_features % 8:
            raise ValueError(f"{self.kind}: {blocks.shape[1]} bytes per row do not hold {self.in_features} weights")

    @classmethod
    def half(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "GgufLinear":
        """A float16 / bfloat16 weight kept in its 16 bits (half of fp32's memory and bytes read per token):
        one token runs qdot.c's fp32 dot of the widened weights, several run torch's fp32 matmul on
        chunks widened as they go; both are fp32's products of the file's values, nothing rounded."""
        code = 1 if weight.dtype == torch.float16 else 30
        rows, cols = weight.shape
        return cls(weight.contiguous().view(torch.uint8).reshape(rows, 2 * cols), torch.tensor([code, cols, 0]), bias)

    def _half_matmul(self, x: torch.Tensor) -> torch.Tensor:
        w = self.blocks.view(torch.float16 if self.type == 1 else torch.bfloat16)
        y = torch.empty(x.shape[0], self.out_features)
        for r in range(0, self.out_features, HALF_CHUNK):  # an L2-sized fp32 copy at a time, not the whole matrix
            y[:, r:r + HALF_CHUNK] = F.linear(x, w[r:r + HALF_CHUNK].float())
        return y

    @classmethod
    def from_file(cls, blocks: torch.Tensor, gtype: int, cols: int, bias: torch.Tensor | None = None) -> "GgufLinear":
        """The linear for a file's block rows: repacked where qdot.c has the layout (and LLMCHAT_REPACK is not 0)."""
        from . import native

        lib = native.library()
        rows = blocks.shape[0]
        size = lib.llmchat_rp_row_bytes(gtype, cols) if lib is not None and REPACK and rows % 8 == 0 else -1
        if size <= 0:
            return cls(blocks, torch.tensor([gtype, cols, 0]), bias)
        blocks = blocks.contiguous()
        out = torch.empty(rows, size, dtype=torch.uint8)
        if lib.llmchat_repack(gtype, blocks.data_ptr(), rows, cols, out.data_ptr()):
            raise MemoryError(f"could not repack a {rows} x {cols} gguf-{GGUF_TYPES[gtype]} matrix")
        return cls(out, torch.tensor([gtype, cols, 1]), bias)

    def __call__(self, x: torch.Tensor, precise: bool | None = None) -> torch.Tensor:
        """precise: None for the policy above (two passes if `self.precise` or for a prompt), or either way."""
        x = x.contiguous() if x.dtype == torch.float32 else x.float().contiguous()
        if self.type in HALF_TYPES and x.shape[0] > 1:
            return self._biased(self._half_matmul(x))
        y = torch.empty(x.shape[0], self.out_features)
        two = (self.precise or (x.shape[0] > 1 and PROMPT_PASSES == 2)) if precise is None else precise
        run = self._lib.llmchat_qmatmul_precise if two else self._lib.llmchat_qmatmul
        if run(self.code, self.blocks.data_ptr(), self.out_features, self.in_features, x.data_ptr(), x.shape[0], y.data_ptr()):
            raise MemoryError(f"the GGUF kernel could not run {self.kind} ({x.shape[0]} x {self.in_features})")
        return self._biased(y)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantized rows (an embedding lookup), exactly as GGUF defines the blocks, in fp32."""
        ids = ids.to(torch.int64).contiguous()
        out = torch.empty(len(ids), self.in_features)
        self._lib.llmchat_dequant_rows(self.code, self.blocks.data_ptr(), self.in_features, ids.data_ptr(), len(ids),
                                       out.data_ptr())
        return out


# A prompt's int8 passes: 2, float32's distribution to rounding, or LLMCHAT_PROMPT_PASSES=1, llama.cpp's arithmetic
# (prefill ~1.3-1.5x faster). The default of CpuLlama.prompt_passes, which models.toml's prompt_passes sets per model.
PROMPT_PASSES = 1 if os.environ.get("LLMCHAT_PROMPT_PASSES", "2").strip() == "1" else 2

# qdot.c's flag on a type code: the rows are repacked (GgufLinear.from_file). LLMCHAT_REPACK=0 keeps the file's
# layout (the packed cache is keyed on it), for A/B measurements.
RP_FLAG = 0x100
REPACK = os.environ.get("LLMCHAT_REPACK", "1").strip() != "0"

# GGML type numbers the kernel takes (gguf-py's GGMLQuantizationType values) and their names.
GGUF_TYPES = {2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 12: "q4_k", 13: "q5_k", 14: "q6_k"}
GGUF_BLOCK = {2: 32, 3: 32, 6: 32, 7: 32, 8: 32, 12: 256, 13: 256, 14: 256}
HALF_TYPES = {1: "f16", 30: "bf16"}  # 16-bit float rows the kernel also takes (GgufLinear.half)
HALF_CHUNK = 512  # rows widened to fp32 at a time for a prompt (GgufLinear._half_matmul)

KINDS = {cls.kind: cls for cls in (FloatLinear, Int4Linear, Int8Linear, Int8GroupLinear)}


def linear_class(kind: str):
    """The class that restores a stored linear of this kind."""
    return GgufLinear if kind.startswith("gguf-") or kind in HALF_TYPES.values() else KINDS[kind]


def half_kernel(raw: "Raw") -> bool:
    """Whether a float weight stays in its 16 bits on the compiled kernel (quant auto, fp16 / bf16, 2-D)."""
    if raw.kind != "float" or raw.requantize or raw.values.dim() != 2 or raw.values.dtype not in (torch.float16, torch.bfloat16):
        return False
    from . import native

    return native.library() is not None


class Int4Rows(_Stored):
    """An embedding table kept as its 4-bit codes (one byte each) with group scales and zeros:
    rows are dequantized when looked up, exactly (q - 8) * scale + zero as the file defines them,
    at a quarter of a float32 table's memory."""

    FIELDS = (("codes", "int4rows_codes"), ("scale", "int4rows_scale"), ("zero", "int4rows_zero"))
    HAS_BIAS = False

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor):
        self.codes, self.scale, self.zero = codes, scale, zero  # [V, in] uint8, [V, in/32] fp32 ×2

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        q = self.codes[ids].float().reshape(len(ids), -1, GROUP)
        return ((q - 8) * self.scale[ids][..., None] + self.zero[ids][..., None]).reshape(len(ids), -1)


@dataclass
class Raw:
    """A weight [out, in] as the file holds it, before it becomes a linear.

    kind "float": `values` (any float dtype). kind "int4": `codes` 0..15 with `scale`/`zero` per
    group of 32 (w = (q - 8) * scale + zero). kind "int8-group": int8 `codes` with `scale` per group
    (w = q * scale). kind "gguf": the file's `blocks` [out, row bytes] of GGML type `gtype`, `cols` wide.
    """

    kind: str
    values: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    zero: torch.Tensor | None = None
    requantize: bool = False  # float values dequantized from a block type the kernels cannot take
    blocks: torch.Tensor | None = None
    gtype: int = 0
    cols: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        if self.kind == "gguf":
            return (self.blocks.shape[0], self.cols)
        return tuple((self.values if self.values is not None else self.codes).shape)

    def dequantize(self) -> torch.Tensor:
        """fp32 values, computed the way GGUF defines them."""
        if self.kind == "float":
            return self.values.float()
        if self.kind == "gguf":
            import numpy as np
            from gguf import dequantize

            values = dequantize(self.blocks.numpy(), self.gtype).astype(np.float32)
            return torch.from_numpy(values).reshape(self.shape)
        out, inp = self.shape
        q = self.codes.float().reshape(out, inp // GROUP, GROUP)
        if self.kind == "int4":
            w = (q - 8) * self.scale[..., None].float() + self.zero[..., None].float()
        else:
            w = q * self.scale[..., None].float()
        return w.reshape(out, inp)


def fuse(raws: list[Raw]) -> Raw | None:
    """Several weights reading the same input (q/k/v, gate/up) as one, so they are one matmul."""
    kind = raws[0].kind
    if any(r.kind != kind for r in raws):
        return None
    if kind == "float":
        dtypes = {r.values.dtype for r in raws}
        if len(dtypes) != 1 or len({r.requantize for r in raws}) != 1:
            return None
        return Raw("float", values=torch.cat([r.values for r in raws]), requantize=raws[0].requantize)
    if kind == "gguf":
        if len({(r.gtype, r.cols) for r in raws}) != 1:
            return None
        return Raw("gguf", blocks=torch.cat([r.blocks for r in raws]), gtype=raws[0].gtype, cols=raws[0].cols)
    cat = lambda name: None if getattr(raws[0], name) is None else torch.cat([getattr(r, name) for r in raws])  # noqa: E731
    return Raw(kind, codes=cat("codes"), scale=cat("scale"), zero=cat("zero"))


def build(raw: Raw, mode: str, dtype: torch.dtype, bias: torch.Tensor | None = None, head: bool = False):
    """The linear for `raw` under quant `mode`.

    - "auto" keeps what the file holds: GGUF blocks run as themselves on the compiled kernel
      (GgufLinear); without it, int4 and int8 blocks are repacked as they are for torch's kernels;
      float stays float (in fp32 on CPU, exact); other GGUF block types (`raw.requantize`) become
      int8 per channel;
    - "none" dequantizes everything to `dtype`;
    - "int4" / "int8" quantize float weights (a file's own 4-bit blocks are never widened). The
      output head (`head`) gets int8 under "int4": it is the most sensitive matrix.
    GGUF blocks the compiled kernel takes (`raw.kind == "gguf"`) run as themselves under every
    mode but "none".
    """
    if raw.kind == "gguf" and mode != "none":
        return GgufLinear.from_file(raw.blocks, raw.gtype, raw.cols, bias)
    if mode == "auto" and half_kernel(raw):
        return GgufLinear.half(raw.values, bias)
    if raw.kind == "int4" and mode != "none" and int4_fits(*raw.shape):
        return Int4Linear.from_codes(raw.codes, raw.scale, raw.zero, bias)
    if raw.kind == "int8-group" and mode in ("auto", "int8") or raw.kind == "int8-group" and mode == "int4" and head:
        return Int8GroupLinear.from_codes(raw.codes, raw.scale, bias)
    weight = raw.dequantize() if raw.kind != "float" or mode != "auto" else raw.values
    if mode == "int4" and not head and int4_fits(*weight.shape):
        return Int4Linear.quantize(weight, bias)
    if (mode in ("int8", "int4") or mode == "auto" and raw.requantize) and weight.shape[1] % 16 == 0:
        return Int8Linear.quantize(weight, bias)  # (the int8 kernel reads garbage for other input sizes)
    target = dtype if mode == "none" else torch.float32
    return FloatLinear(weight.to(target).contiguous(), None if bias is None else bias.float())
