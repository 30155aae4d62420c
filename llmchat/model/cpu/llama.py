"""llmchat's own CPU forward pass for Llama-shaped decoders (Llama, SmolLM, Mistral, Qwen2).

Why not transformers' modeling code on this path: a decode step there is ~5k small ops, a KV
cache grown by `torch.cat`, and a bf16 attention kernel that is slow for one query. Here:
- weights stay in the form they are computed in (quant.py: int4 / int8 packed kernels, or float);
  q/k/v and gate/up are fused into one matmul each;
- the residual stream, norms, RoPE and attention are fp32; the KV cache is preallocated and
  written in place (grown by doubling);
- RoPE is one complex multiply (q/k rows interleaved at load), attention is fp32 SDPA over the
  filled length, grouped-query heads without copying K/V.

The model answers the engine's call the way a transformers model does
(`model(input_ids=, cache=, use_cache=, logits_to_keep=)` → `.logits`, `.cache`), and its cache
has `crop()`, so `engine.PromptCache` needs no special case. Batch size 1 only: llmchat decodes
one conversation at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .quant import PROMPT_PASSES, GgufLinear

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
_INITIAL_CAPACITY = 256


class Unsupported(Exception):
    """This checkpoint needs transformers' own modeling code (the reason is the message)."""


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    context: int

    @classmethod
    def from_config(cls, config: dict) -> "Shape":
        if config.get("model_type") not in SUPPORTED_TYPES:
            raise Unsupported(f"model_type {config.get('model_type')!r}")
        if config.get("hidden_act", "silu") != "silu":
            raise Unsupported(f"activation {config.get('hidden_act')!r}")
        context = config.get("max_position_embeddings", 2048)
        window = config.get("sliding_window", 4096) if config.get("model_type") == "mistral" else None
        if config.get("model_type") == "qwen2" and config.get("use_sliding_window") and \
                config.get("max_window_layers", 0) < config["num_hidden_layers"]:
            window = config.get("sliding_window")
        if window is not None and window < context:  # a banded mask this forward pass does not implement
            raise Unsupported(f"sliding-window attention ({window} of {context} positions)")
        heads = config["num_attention_heads"]
        return cls(vocab=config["vocab_size"], hidden=config["hidden_size"], layers=config["num_hidden_layers"],
                   heads=heads, kv_heads=config.get("num_key_value_heads") or heads,
                   head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                   eps=float(config.get("rms_norm_eps", 1e-6)), context=context)


def rope_inv_freq(config: dict, head_dim: int) -> torch.Tensor:
    """RoPE inverse frequencies: default, linear and llama3 scaling (others need transformers)."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / float(params["factor"])
    if kind == "llama3":  # as transformers' _compute_llama3_parameters
        factor, low, high = float(params["factor"]), float(params["low_freq_factor"]), float(params["high_freq_factor"])
        old = float(params["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        return torch.where(medium, smoothed, scaled)
    raise Unsupported(f"rope_type {kind!r}")


class StaticKV:
    """Preallocated keys/values [layers, kv_heads, capacity, head_dim], fp32; `length` are valid.

    Grows by doubling (a copy) up to the context length, so a short chat does not hold the
    memory of the whole context window."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.length = 0
        self.k = self.v = None
        self._reserve(_INITIAL_CAPACITY)

    def _reserve(self, needed: int) -> None:
        capacity = 0 if self.k is None else self.k.shape[2]
        if needed <= capacity:
            return
        new = max(needed, 2 * capacity, _INITIAL_CAPACITY)
        if capacity < self.shape.context:  # up to the context window; past it (a larger `context`), keep doubling
            new = max(needed, min(new, self.shape.context))
        s = self.shape
        k = torch.zeros(s.layers, s.kv_heads, new, s.head_dim)
        v = torch.zeros_like(k)
        if self.k is not None and self.length:
            k[:, :, :self.length] = self.k[:, :, :self.length]
            v[:, :, :self.length] = self.v[:, :, :self.length]
        self.k, self.v = k, v

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, n: int) -> None:
        """As transformers' DynamicCache.crop: n < 0 drops n positions from the end, n ≥ 0 keeps n."""
        self.length = max(0, self.length + n if n < 0 else min(n, self.length))


class Rows:
    """Embedding rows, either a float table or dequantized on the fly from grouped codes."""

    def __init__(self, table: torch.Tensor | None = None, grouped=None):
        self.table, self.grouped = table, grouped

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids].float() if self.table is not None else self.grouped.rows(ids)


@dataclass
class Layer:
    attn_norm: torch.Tensor
    qkv: object  # a quant.* linear, or a (q, k, v) tuple of them
    o: object
    mlp_norm: torch.Tensor
    gate_up: object  # fused, or a (gate, up) tuple
    down: object


class CpuLlama:
    """A Llama-shaped decoder over quant.* linears; see the module docstring."""

    def __init__(self, shape: Shape, inv_freq: torch.Tensor, embed: Rows, layers: list[Layer],
                 norm: torch.Tensor, head, quant: str, dtype: torch.dtype):
        self.shape, self.embed, self.layers, self.norm, self.head = shape, embed, layers, norm, head
        self.inv_freq = inv_freq.float()
        self.quant, self.dtype = quant, dtype
        self.device = torch.device("cpu")
        self.scale = 1.0 / math.sqrt(shape.head_dim)
        self._cis = torch.empty(0, shape.head_dim // 2, dtype=torch.complex64)
        from . import native

        self._lib = native.library()  # the compiled small ops (norm, one-query attention, SwiGLU), when built
        for layer in layers:  # down_proj reads SwiGLU's outliers: int8 rounding there flips near ties (quant.GgufLinear)
            if hasattr(layer.down, "precise"):
                layer.down.precise = True
        # A prompt's int8 activation passes on GGUF blocks: 2, float32's distribution to rounding (quant.GgufLinear);
        # 1, as llama.cpp (and as each generated token but down_proj), prefill ~1.3-1.5x faster. models.toml's
        # prompt_passes sets it per model (cpu/load.py), LLMCHAT_PROMPT_PASSES for every model.
        self.prompt_passes = PROMPT_PASSES
        from .threads import ThreadPolicy

        self._threads = ThreadPolicy()  # fewer threads while another process holds a core (threads.py)
        self._step = self._step_layers()  # one C call per decode step, when every matmul is GGUF blocks

    # ---- the transformers-like surface the engine uses
    takes_prompt_flag = True  # engine.loop passes prompt=True for prompt tokens (also a single one)

    def __call__(self, input_ids: torch.Tensor, cache: StaticKV | None = None, use_cache: bool = True,
                 logits_to_keep: int = 0, prompt: bool = False, **_) -> SimpleNamespace:
        cache = cache if cache is not None else StaticKV(self.shape)
        self._threads.tick()
        logits = self.forward(input_ids[0], cache, logits_to_keep, prompt=prompt)
        return SimpleNamespace(logits=logits[None], cache=cache)

    def matmuls(self) -> list:
        """Every linear a token goes through, the output head last."""
        out = [lin for layer in self.layers for lin in (*_parts(layer.qkv), layer.o, *_parts(layer.gate_up), layer.down)]
        return out + [self.head]

    def kinds(self) -> dict[str, int]:
        """How many matmuls of each kind (int4, int8, float…) the model runs per token."""
        counts: dict[str, int] = {}
        for lin in self.matmuls():
            counts[lin.kind] = counts.get(lin.kind, 0) + 1
        return counts

    @property
    def quant_label(self) -> str:
        """How the matmuls are held, e.g. "gguf-q4_1+gguf-q8_0" for the default Q4_1 GGUF (its own
        blocks, compiled kernel), "int4+int8-group" for it on torch's kernels, "none" for fp32."""
        kinds = [k for k in self.kinds() if k != "float"] or ["none"]
        order = ["int4", "int8", "int8-group", "none"]
        return "+".join(sorted(kinds, key=lambda k: (order.index(k) if k in order else -1, k)))

    # ---- the forward pass
    def _rope(self, end: int) -> torch.Tensor:
        """cos + i·sin of every position up to `end`, as complex numbers [positions, head_dim / 2]."""
        if self._cis.shape[0] < end:
            size = max(end, 2 * self._cis.shape[0], _INITIAL_CAPACITY)
            freqs = torch.outer(torch.arange(size, dtype=torch.float32), self.inv_freq)
            self._cis = torch.polar(torch.ones_like(freqs), freqs)
        return self._cis

    def _step_layers(self):
        """The layers as qdot.c's llmchat_layer array (ctypes), or None when a decode step cannot run as one
        C call: no kernel, a matmul that is not GGUF blocks (float, torch int4/int8), a bias, odd norms."""
        from . import native

        def qlin(lin):
            if not isinstance(lin, GgufLinear) or lin.bias is not None:
                raise LookupError
            return native.QLin(lin.code, int(lin.precise), lin.out_features, lin.blocks.data_ptr())

        def norm_ok(w):
            return w.dtype == torch.float32 and w.is_contiguous() and w.shape == (self.shape.hidden,)

        if self._lib is None or not hasattr(self._lib, "llmchat_decode_step"):
            return None
        array = (native.Layer * len(self.layers))()
        try:
            for desc, layer in zip(array, self.layers):
                qkv, gate_up = _parts(layer.qkv), _parts(layer.gate_up)
                if len(qkv) > 3 or len(gate_up) > 2 or not (norm_ok(layer.attn_norm) and norm_ok(layer.mlp_norm)):
                    return None
                desc.attn_norm, desc.mlp_norm = layer.attn_norm.data_ptr(), layer.mlp_norm.data_ptr()
                for i, lin in enumerate(qkv):
                    desc.qkv[i] = qlin(lin)
                for i, lin in enumerate(gate_up):
                    desc.gu[i] = qlin(lin)
                desc.nqkv, desc.ngu, desc.o, desc.down = len(qkv), len(gate_up), qlin(layer.o), qlin(layer.down)
        except LookupError:
            return None
        s = self.shape
        ffn = self.layers[0].down.in_features
        work = torch.empty(2 * s.hidden + 2 * (s.heads + s.kv_heads) * s.head_dim + 3 * ffn)
        return array, ffn, work

    def _decode_step(self, ids: torch.Tensor, cache: StaticKV) -> torch.Tensor:
        """One token through every layer in qdot.c's llmchat_decode_step (same ops as forward's loop)."""
        s, (array, ffn, work) = self.shape, self._step
        start = cache.length
        cache._reserve(start + 1)
        cis = self._rope(start + 1)[start]
        x = self.embed(ids.to(torch.long)).contiguous()
        rc = self._lib.llmchat_decode_step(array, s.layers, s.hidden, s.heads, s.kv_heads, s.head_dim, ffn, s.eps,
                                           self.scale, cis.data_ptr(), cache.k.data_ptr(), cache.v.data_ptr(),
                                           cache.k.shape[2], start, x.data_ptr(), work.data_ptr())
        if rc:
            raise MemoryError("the GGUF kernel could not run a decode step")
        cache.length = start + 1
        return self.head(self._native_norm(x, self.norm, s.eps))

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: StaticKV, logits_to_keep: int = 0, prompt: bool = False) -> torch.Tensor:
        """Logits of the last `logits_to_keep` positions (all with 0). A prompt (`prompt`, or any T > 1) runs
        its GGUF matmuls in `prompt_passes` int8 passes (2 by default), a generated token in one but down_proj's."""
        s = self.shape
        T, start = ids.shape[0], cache.length
        exact = (prompt or T > 1) and self.prompt_passes == 2
        if T == 1 and self._step is not None and not exact:
            return self._decode_step(ids, cache)

        def mm(lin, h):
            if isinstance(lin, GgufLinear):  # two passes for a prompt, or where the linear asks (down_proj)
                return lin(h, precise=exact or lin.precise)
            return lin(h)

        end = start + T
        cache._reserve(end)
        cis = self._rope(end)[start:end, None]
        mask = None
        if T > 1 and start > 0:  # causal over the new rows, everything cached is visible
            mask = torch.ones(T, end, dtype=torch.bool).tril_(start)
        x = self.embed(ids.to(torch.long))
        q_size, kv_size = s.heads * s.head_dim, s.kv_heads * s.head_dim
        group = s.heads // s.kv_heads
        lib = self._lib
        norm = self._native_norm if lib is not None else _rms_norm
        for i, layer in enumerate(self.layers):
            h = norm(x, layer.attn_norm, s.eps)
            if isinstance(layer.qkv, tuple):
                q, k, v = (mm(lin, h) for lin in layer.qkv)
            else:
                q, k, v = mm(layer.qkv, h).split([q_size, kv_size, kv_size], dim=-1)
            q = _rotate(q, cis, T, s.heads, s.head_dim)
            k = _rotate(k, cis, T, s.kv_heads, s.head_dim)
            cache.k[i, :, start:end] = k.transpose(0, 1)
            cache.v[i, :, start:end] = v.view(T, s.kv_heads, s.head_dim).transpose(0, 1)
            if T == 1 and lib is not None:  # one query: the compiled loop (torch's SDPA costs ~60 us a call here)
                q = q.contiguous()
                attn = torch.empty(1, q_size)
                lib.llmchat_attend1(q.data_ptr(), cache.k[i].data_ptr(), cache.v[i].data_ptr(), s.heads, s.kv_heads,
                                    cache.k.shape[2], end, s.head_dim, self.scale, attn.data_ptr())
            else:
                keys, values = cache.k[i, :, :end], cache.v[i, :, :end]
                # fp32 SDPA reads only the filled part of the cache; grouped heads share K/V (no copy).
                attn = F.scaled_dot_product_attention(
                    q.transpose(0, 1)[None], keys[None], values[None], attn_mask=mask,
                    is_causal=mask is None and T > 1, scale=self.scale, enable_gqa=group > 1)
                attn = attn[0].transpose(0, 1).reshape(T, q_size)
            x = x + mm(layer.o, attn)
            h = norm(x, layer.mlp_norm, s.eps)
            if isinstance(layer.gate_up, tuple):
                gate, up = (mm(lin, h) for lin in layer.gate_up)
                act = F.silu(gate) * up
            elif lib is not None:
                gu = mm(layer.gate_up, h).contiguous()
                act = torch.empty(T, gu.shape[1] // 2)
                lib.llmchat_swiglu(gu.data_ptr(), T, act.shape[1], act.data_ptr())
            else:
                gate, up = mm(layer.gate_up, h).chunk(2, dim=-1)
                act = F.silu(gate) * up
            x = x + mm(layer.down, act)
        cache.length = end
        if logits_to_keep:
            x = x[-logits_to_keep:]
        return mm(self.head, norm(x, self.norm, s.eps))  # a prompt's logits, like its rows

    def _native_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty_like(x)
        self._lib.llmchat_rmsnorm(x.data_ptr(), weight.data_ptr(), x.shape[0], x.shape[1], eps, out.data_ptr())
        return out


def _parts(linear) -> tuple:
    return linear if isinstance(linear, tuple) else (linear,)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # One fused op; bit-identical to transformers' LlamaRMSNorm in fp32 (checked in tests/test_fast.py).
    return F.rms_norm(x, weight.shape, weight, eps)


def _rotate(x: torch.Tensor, cis: torch.Tensor, T: int, heads: int, dim: int) -> torch.Tensor:
    """RoPE as one complex product. The q/k weight rows were put in interleaved order at assembly
    (`interleave_heads`: pairs (i, i + dim/2) side by side), so a pair is one complex number;
    the same permutation of q and k leaves every attention score unchanged."""
    pairs = x.reshape(T, heads, dim // 2, 2)
    return torch.view_as_real(torch.view_as_complex(pairs) * cis).view(T, heads, dim)


def interleave_order(rows: int, heads: int) -> torch.Tensor:
    """Row order that turns transformers' rotate-half layout of q/k rows into interleaved pairs."""
    dim = rows // heads
    half = torch.arange(dim // 2)
    one = torch.stack([half, half + dim // 2], dim=-1).reshape(dim)
    return (torch.arange(heads)[:, None] * dim + one).reshape(rows)
