"""llmchat's own CPU forward and its weight forms: every fast path against a reference.

- the GGUF's 4-bit and 8-bit blocks are repacked exactly (same values as the dequantized model);
- the int4 path's quality on smollm2 (greedy text, NLL on a fixed text) against float32;
- KV cache growth, prefix reuse and the packed-weight cache;
- --quant on float checkpoints (int8 / int4), and where it is refused.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from llmchat.model.cpu import weights as W
from llmchat.model.cpu import quant as Q
from llmchat.engine.loop import PromptCache, generate
from llmchat.errors import ConfigError, UsageError
from llmchat.engine.events import Finished
from llmchat.model.cpu.llama import StaticKV
from llmchat.model.files import gguf_file
from llmchat.model.load import load
from llmchat.config.registry import ModelSpec, load_registry
from llmchat.engine.sampling import SamplingParams

# The opening of README.md as of 2026-12-04 (4000 characters), kept apart so that README edits move no figure
FIXED_TEXT = (Path(__file__).resolve().parent / "data" / "fixed_text.md").read_text(encoding="utf-8")


def greedy(model, ids, n):
    params = SamplingParams(temperature=0, max_new_tokens=n)
    return [e for e in generate(model, ids, params) if not isinstance(e, Finished)]


def nll(loaded, ids) -> float:
    """Mean negative log-likelihood of `ids` (each token given the ones before it), one forward."""
    logits = loaded.model(input_ids=torch.tensor([ids]), cache=None, use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    return float(-logprobs.gather(1, torch.tensor(ids[1:])[:, None]).mean())


# ---------------------------------------------------------------------------- the kernels

def test_int4_linear_computes_the_grid_it_was_given():
    torch.manual_seed(0)
    out, inp = 96, 128
    codes = torch.randint(0, 16, (out, inp))
    scale = torch.rand(out, inp // 32) * 0.02
    zero = torch.randn(out, inp // 32) * 0.05
    raw = Q.Raw("int4", codes=codes, scale=scale, zero=zero)
    x = torch.randn(3, inp)
    expected = x @ raw.dequantize().t()
    got = Q.build(raw, "auto", torch.float32)(x)
    assert isinstance(Q.build(raw, "auto", torch.float32), Q.Int4Linear)
    # bf16 activations and scales: ~3 significant digits
    assert torch.allclose(got, expected, rtol=0, atol=0.02 * expected.abs().max())


def test_shapes_the_int4_kernel_cannot_take_stay_exact():
    """torch packs int4 only for output sizes divisible by 16: other blocks are dequantized."""
    raw = Q.Raw("int4", codes=torch.randint(0, 16, (40, 64)), scale=torch.rand(40, 2), zero=torch.rand(40, 2))
    linear = Q.build(raw, "auto", torch.float32)
    assert isinstance(linear, Q.FloatLinear)
    x = torch.randn(2, 64)
    assert torch.allclose(linear(x), x @ raw.dequantize().t(), atol=1e-5)


def test_quantizers_stay_within_their_step():
    torch.manual_seed(1)
    w = torch.randn(64, 128)
    x = torch.eye(128)
    for mode, cls in (("int4", Q.Int4Linear), ("int8", Q.Int8Linear)):
        linear = Q.build(Q.Raw("float", values=w), mode, torch.float32)
        assert isinstance(linear, cls)
        back = linear(x).t()  # the identity input reads the weights back out
        step = (w.amax() - w.amin()) / (15 if mode == "int4" else 254)
        assert (back - w).abs().max() <= step  # half a step of rounding, plus bf16 scales
    head = Q.build(Q.Raw("float", values=w), "int4", torch.float32, head=True)
    assert isinstance(head, Q.Int8Linear)  # the output head stays 8-bit under int4


@pytest.mark.parametrize("rows", [50, 64])
def test_int8_groups_are_gguf_q8_0(rows):
    torch.manual_seed(2)
    codes = torch.randint(-128, 128, (rows, 64), dtype=torch.int8)
    scale = torch.rand(rows, 2)
    raw = Q.Raw("int8-group", codes=codes, scale=scale)
    linear = Q.build(raw, "auto", torch.float32)
    assert isinstance(linear, Q.Int8GroupLinear)
    ids = torch.tensor([0, 7, rows - 1])
    assert torch.equal(linear.rows(ids), raw.dequantize()[ids])  # the embedding lookup is exact
    x = torch.randn(2, 64)
    expected = x @ raw.dequantize().t()
    assert torch.allclose(linear(x), expected, rtol=0, atol=0.02 * expected.abs().max())


def test_fused_rms_norm_is_transformers_rms_norm():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from llmchat.model.cpu.llama import _rms_norm

    torch.manual_seed(3)
    x = torch.randn(5, 64) * 4
    norm = LlamaRMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(64))
        assert torch.equal(_rms_norm(x, norm.weight, 1e-5), norm(x))


def gguf_blocks(kind, rows: int, cols: int, scale_at: list[int], seed: int) -> np.ndarray:
    """Random bytes laid out as `kind` blocks, with finite fp16 scales at the given byte offsets."""
    from gguf import GGML_QUANT_SIZES

    per, size = GGML_QUANT_SIZES[kind]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows * cols // per, size), dtype=np.uint8)
    for at in scale_at:
        blocks[:, at:at + 2] = (rng.random(len(blocks)) * 0.05).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


@pytest.mark.parametrize("kind_name, scale_at, expect", [
    ("Q4_0", [0], "int4"), ("Q4_1", [0, 2], "int4"), ("Q8_0", [0], "int8-group"), ("Q4_K", [0, 2], "int4"),
    ("Q5_K", [0, 2], "float"), ("Q6_K", [208], "float")])
def test_gguf_block_types_read_as_gguf_py_dequantizes_them(kind_name, scale_at, expect):
    """Without the compiled kernel (tests/test_qdot.py covers it), every block type gives exactly
    the weights gguf-py's reference dequantizer gives; the ones torch's kernels can take stay in
    their codes, the others become int8 under quant = auto."""
    from gguf import GGMLQuantizationType, dequantize

    kind = GGMLQuantizationType[kind_name]
    rows, cols = 32, 512
    data = gguf_blocks(kind, rows, cols, scale_at, seed=len(kind_name) + scale_at[-1])
    expected = torch.from_numpy(dequantize(data, kind).astype(np.float32)).reshape(rows, cols)
    raw = W.raw_from_gguf(data, kind, [rows, cols], native=False)
    assert raw.kind == expect
    assert torch.allclose(raw.dequantize(), expected, rtol=1e-6, atol=1e-7 * float(expected.abs().max()))
    linear = Q.build(raw, "auto", torch.float32)
    assert type(linear).__name__ == {"int4": "Int4Linear", "int8-group": "Int8GroupLinear", "float": "Int8Linear"}[expect]
    x = torch.randn(3, cols)
    reference = x @ expected.t()
    assert (linear(x) - reference).abs().max() < 0.02 * reference.abs().max()  # bf16 activations (+ int8 rounding)
    assert isinstance(Q.build(raw, "none", torch.float32), Q.FloatLinear)
    ids = torch.tensor([0, 5, rows - 1])  # the same blocks as an embedding table: exact rows
    assert torch.allclose(W._rows(raw, None, "auto", torch.float32)(ids), expected[ids], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- smollm2's GGUF

@pytest.mark.smollm2
def test_gguf_blocks_are_repacked_not_requantized(smollm2, smollm2_reference):
    """gguf-py's reading of the Q4_1 / Q8_0 blocks (with the q/k rows un-permuted) gives exactly
    the weights transformers' GGUF loader dequantizes: nothing was re-quantized on the way, with
    the compiled kernel (the file's blocks) and without it (torch's int4 / int8 groups)."""
    spec = smollm2.spec
    config = json.loads((smollm2.folder / "config.json").read_text())
    params = dict(smollm2_reference.model.named_parameters())
    for native, expect in ((True, {"q_proj": "gguf", "k_proj": "gguf", "down_proj": "gguf", "embed_tokens": "gguf"}),
                           (False, {"q_proj": "int4", "k_proj": "int4", "down_proj": "int4", "embed_tokens": "int8-group"})):
        raws = W.read_gguf(gguf_file(spec), config, native=native)
        kinds = {}
        for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                     "model.layers.7.mlp.down_proj.weight", "model.embed_tokens.weight"):
            raw = raws[name]
            kinds[name.split(".")[-2]] = raw.kind
            assert torch.equal(raw.dequantize(), params[name].detach()), name
        assert kinds == expect
    assert smollm2.quant == "gguf-q4_1+gguf-q8_0" and smollm2.backend == "llmchat"
    assert smollm2.model.kinds() == {"gguf-q4_1": 120, "gguf-q8_0": 1}  # q/k/v and gate/up fused


@pytest.mark.smollm2
def test_int4_quality_on_smollm2_against_float32(smollm2, smollm2_fp32, record_property):
    """The default (GGUF blocks, bf16 activations) against the dequantized float32 model.

    Greedy text may part after a while (two tokens of near-equal probability); the mean NLL on a
    fixed text must stay within 1% of float32's."""
    ids = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": "Write a short poem about the sea and the stars."}],
                                                add_generation_prompt=True, return_dict=False)
    fast = [e.id for e in greedy(smollm2, ids, 64)]
    exact = [e.id for e in greedy(smollm2_fp32, ids, 64)]
    first = next((i for i, (a, b) in enumerate(zip(fast, exact)) if a != b), None)
    text = smollm2.tokenizer.encode(FIXED_TEXT)[:600]
    base, quant = nll(smollm2_fp32, text), nll(smollm2, text)
    diff = (quant - base) / base
    record_property("greedy_first_divergence", first)
    record_property("nll_fp32", round(base, 4))
    record_property("nll_int4", round(quant, 4))
    print(f"int4 vs fp32: greedy identical for {first if first is not None else 64}/64 tokens; "
          f"NLL {quant:.4f} vs {base:.4f} ({100 * diff:+.3f}%)")
    assert abs(diff) < 0.01


@pytest.mark.smollm2
def test_int4_probabilities_equal_a_fresh_forward_of_the_same_weights(smollm2):
    """With the cache (prefill, then one token at a time) = without it, on the default model, within
    what int8 activations allow. A fresh forward is a prompt (T > 1), whose rows take two int8 passes
    (quant.GgufLinear: float32's result to rounding); a cached step takes one pass (but for down_proj),
    so the difference is one pass's activation rounding, carried through 30 layers. Measured: up to
    0.030 in probability (0.078 when prompts took one pass too; the bound was 0.02 for bf16 kernels)."""
    ids = smollm2.tokenizer.encode("The tallest mountain in the world is")
    events = greedy(smollm2, ids, 10)
    prefix = list(ids)
    for event in events:
        logits = smollm2.model(input_ids=torch.tensor([prefix]), cache=None).logits[0, -1].float()
        probs = torch.softmax(logits, -1)
        assert abs(event.prob - float(probs[event.id])) < 0.05
        prefix.append(event.id)


@pytest.mark.smollm2
def test_the_one_call_decode_step_is_the_layer_loop(registry):
    """qdot.c's llmchat_decode_step (every layer of a GGUF decode step in one C call) computes what
    CpuLlama.forward's layer loop computes. With two int8 passes everywhere there is no activation
    rounding to amplify, so the logits agree to float rounding over steps past the cache's first
    256 positions (it grows in between)."""
    from llmchat.model.cpu.llama import GgufLinear

    loaded = load(registry.get("smollm2"), dtype="float32", device="cpu")
    model = loaded.model
    assert model._step is not None, "the default GGUF should decode in one C call"
    for lin in model.matmuls():
        if isinstance(lin, GgufLinear):
            lin.precise = True
    model._step = model._step_layers()
    ids = loaded.tokenizer.encode(FIXED_TEXT)[:250]
    caches = [StaticKV(model.shape), StaticKV(model.shape)]
    for cache in caches:
        model.forward(torch.tensor(ids), cache, 1)
    step = model._step
    for token in [int(t) for t in torch.randint(0, model.shape.vocab, (12,))]:
        fast = model.forward(torch.tensor([token]), caches[0], 1)
        model._step = None
        slow = model.forward(torch.tensor([token]), caches[1], 1)
        model._step = step
        assert torch.allclose(fast, slow, rtol=0, atol=2e-3 * float(slow.abs().max())), float((fast - slow).abs().max())
    assert caches[0].length == caches[1].length == 262 and caches[0].k.shape[2] > 256
    assert torch.equal(caches[0].k[:, :, :262] != 0, caches[1].k[:, :, :262] != 0)
    for a, b in ((caches[0].k, caches[1].k), (caches[0].v, caches[1].v)):
        assert torch.allclose(a[:, :, :262], b[:, :, :262], rtol=0, atol=1e-3 * float(b.abs().max()))


@pytest.mark.smollm2
def test_long_prompt_grows_the_cache_and_matches_transformers(smollm2_fp32, smollm2_reference):
    """A prompt past the cache's first allocation (256) and a reused prefix across the growth."""
    ids = smollm2_fp32.tokenizer.encode(FIXED_TEXT)[:300]
    cache = PromptCache()
    events = [e for e in generate(smollm2_fp32, ids, SamplingParams(temperature=0, max_new_tokens=5), cache=cache)
              if not isinstance(e, Finished)]
    assert isinstance(cache.kv, StaticKV) and cache.kv.k.shape[2] >= 305
    longer = ids + [e.id for e in events] + ids[:40]
    more = list(generate(smollm2_fp32, longer, SamplingParams(temperature=0, max_new_tokens=3), cache=cache))
    assert more[-1].reused_tokens >= 300
    with torch.no_grad():
        logits = smollm2_reference.model(torch.tensor([longer]), use_cache=False).logits[0, -1]
    assert abs(more[0].prob - float(torch.softmax(logits, -1)[more[0].id])) < 1e-4


@pytest.mark.smollm2
def test_packed_cache_is_used_and_a_corrupt_one_is_rebuilt(smollm2, registry):
    spec = registry.get("smollm2")
    packed = sorted(smollm2.folder.glob("packed-auto-*.safetensors"))
    assert len(packed) == 1
    warm = load(spec, dtype="float32", device="cpu")
    assert not warm.converted and warm.model.kinds() == smollm2.model.kinds()
    ids = smollm2.tokenizer.encode("Hello there")
    assert torch.equal(warm.model(input_ids=torch.tensor([ids])).logits, smollm2.model(input_ids=torch.tensor([ids])).logits)
    packed[0].write_bytes(b"not a safetensors file")
    rebuilt = load(spec, dtype="float32", device="cpu")
    assert rebuilt.converted
    assert torch.equal(rebuilt.model(input_ids=torch.tensor([ids])).logits, smollm2.model(input_ids=torch.tensor([ids])).logits)


# ---------------------------------------------------------------------------- --quant on float checkpoints

@pytest.mark.smollm2
@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quant_on_a_float_checkpoint(smollm2_reference, smollm2_fp32, quant, record_property):
    """--quant int8/int4 on a float32 folder (smollm2 as transformers dequantized it): quantized
    at load, packed once, then mapped from the cache; NLL within 2% of float32."""
    spec = ModelSpec(alias="smollm2-f32", source="path", location=str(smollm2_reference.folder))
    model = load(spec, dtype="float32", device="cpu", quant=quant)
    assert model.backend == "llmchat" and model.quant.startswith(quant)
    text = smollm2_fp32.tokenizer.encode(FIXED_TEXT)[:400]
    base, got = nll(smollm2_fp32, text), nll(model, text)
    record_property(f"nll_{quant}_requantized", round(got, 4))
    print(f"--quant {quant} on float32: NLL {got:.4f} vs {base:.4f} ({100 * (got - base) / base:+.3f}%)")
    assert abs(got - base) / base < 0.02
    again = load(spec, dtype="float32", device="cpu", quant=quant)
    assert model.converted and not again.converted
    ids = torch.tensor([text[:20]])
    assert torch.equal(again.model(input_ids=ids).logits, model.model(input_ids=ids).logits)


def test_quant_is_refused_where_it_cannot_run(registry):
    with pytest.raises(UsageError, match="own forward pass.*model_type 'deepseek_v3'"):
        load(registry.get("tiny-deepseek"), device="cpu", quant="int4")
    with pytest.raises(UsageError, match="not one of"):
        load(registry.get("tiny-llama"), device="cpu", quant="int3")


@pytest.mark.parametrize("key, bad, good, allowed", [("quant", '"int2"', '"int8"', "auto, none, int8, int4"),
                                                     ("prompt_passes", "3", "1", "1, 2")])
def test_registry_validates_quant_and_prompt_passes(tmp_path, key, bad, good, allowed):
    toml = tmp_path / "m.toml"
    toml.write_text(f'[models.x]\ngguf = "x.gguf"\n{key} = {bad}\n')
    with pytest.raises(ConfigError, match=rf"m.toml:3: models.x.{key} = {bad.replace(chr(34), chr(39))} is not one of {allowed}"):
        load_registry(toml)
    toml.write_text(f'[models.x]\nurl = "http://127.0.0.1:9"\n{key} = {good}\n')
    with pytest.raises(ConfigError, match=rf"`{key}` does not apply here"):  # weights loaded here only
        load_registry(toml)
    toml.write_text(f'[models.x]\ngguf = "x.gguf"\n{key} = {good}\n')
    assert getattr(load_registry(toml).get("x"), key) == tomllib.loads(f"v = {good}")["v"]


def test_cli_quant_flag(cli, tiny):
    proc = cli("--models", str(tiny["toml"]), "ask", "-m", "tiny-deepseek", "--quant", "int4", "hi")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--quant none" in proc.stderr


def test_an_unwritable_cache_loses_only_the_cache(registry, tmp_path, monkeypatch, capsys):
    """A read-only cache folder: the model loads and runs, with one note on stderr."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = registry.get("tiny-llama")
    monkeypatch.setattr(W, "save", lambda model, path: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    from llmchat.render.progress import terminal_progress

    model = load(spec, device="cpu", quant="int8", progress=terminal_progress())  # as the CLI calls it: notes on stderr
    assert model.backend == "llmchat" and model.model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] > 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not cache the packed weights" in err and "Permission denied" in err


def test_llama_with_every_bias_matches_transformers(tiny, tmp_path):
    """attention_bias and mlp_bias: every bias is used (an unused tensor would make the load fall
    back to transformers, which the backend check catches)."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "biased"
    shutil.copytree(tiny["llama"], folder)
    config = LlamaConfig.from_pretrained(str(folder))
    config.attention_bias = config.mlp_bias = True
    torch.manual_seed(5)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5)
    model.save_pretrained(str(folder))
    fast = load(ModelSpec(alias="biased", source="path", location=str(folder)), dtype="float32", device="cpu")
    assert fast.backend == "llmchat"
    ids = torch.tensor([[1, 5, 9, 30, 7, 2, 11]])
    with torch.no_grad():
        assert torch.allclose(fast.model(input_ids=ids).logits[0], model(ids).logits[0], atol=1e-4)


@pytest.mark.parametrize("dtype,tied", [(torch.float16, False), (torch.bfloat16, True)])
def test_16_bit_checkpoints_stay_16_bit_and_compute_in_float32(tiny, tmp_path, dtype, tied):
    """float16 / bfloat16 safetensors keep their 16 bits (quant.GgufLinear.half: half of fp32's memory and
    bytes per token); a prompt (torch's fp32 matmul on widened chunks) and a cached token (qdot.c's one-call
    decode step) both give transformers' float32 logits of the same weights."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "half"
    shutil.copytree(tiny["llama"], folder)
    config = LlamaConfig.from_pretrained(str(folder))
    config.tie_word_embeddings = tied
    torch.manual_seed(9)
    LlamaForCausalLM(config).to(dtype).save_pretrained(str(folder))
    reference = LlamaForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    fast = load(ModelSpec(alias="half", source="path", location=str(folder)), device="cpu")
    name = "f16" if dtype == torch.float16 else "bf16"
    assert fast.backend == "llmchat" and set(fast.model.kinds()) == {name} and fast.model._step is not None
    assert fast.model.embed.grouped is not None and (fast.model.embed.grouped is fast.model.head) == tied
    ids = torch.tensor([[1, 5, 9, 30, 7, 2, 11]])
    with torch.no_grad():
        want = reference(ids).logits[0]
        assert torch.allclose(fast.model(input_ids=ids).logits[0], want, atol=1e-4)
        out = fast.model(input_ids=ids[:, :-1])
        last = fast.model(input_ids=ids[:, -1:], cache=out.cache).logits[0, -1]
        assert torch.allclose(last, want[-1], atol=1e-4)


def test_sliding_window_models_are_left_to_transformers():
    from llmchat.model.cpu.llama import Shape, Unsupported

    base = dict(vocab_size=10, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=8192)
    with pytest.raises(Unsupported, match="sliding-window"):
        Shape.from_config({**base, "model_type": "mistral"})  # transformers' default window: 4096
    assert Shape.from_config({**base, "model_type": "mistral", "sliding_window": None}).context == 8192
    with pytest.raises(Unsupported, match="sliding-window"):
        Shape.from_config({**base, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 4096,
                           "max_window_layers": 1})
    assert Shape.from_config({**base, "model_type": "qwen2", "use_sliding_window": False}).layers == 2


def test_int8_needs_an_input_size_the_kernel_reads_right():
    """torch's int8 kernel misreads input sizes that are not multiples of 16: those stay float."""
    raw = Q.Raw("float", values=torch.randn(32, 40))
    assert isinstance(Q.build(raw, "int8", torch.float32), Q.FloatLinear)
    assert isinstance(Q.build(Q.Raw("float", values=torch.randn(32, 48)), "int8", torch.float32), Q.Int8Linear)


def test_kv_cache_keeps_doubling_past_the_context_window():
    from llmchat.model.cpu.llama import Shape

    kv = StaticKV(Shape(vocab=10, hidden=8, layers=1, heads=1, kv_heads=1, head_dim=8, eps=1e-6, context=300))
    kv._reserve(290)
    assert kv.k.shape[2] == 300  # the whole window, no more
    kv._reserve(301)
    assert kv.k.shape[2] == 600  # a larger `context` than the config's: doubling, not +1 per token


@pytest.mark.smollm2
def test_prompt_passes_trade_the_first_tokens_accuracy_for_speed(smollm2, smollm2_fp32):
    """models.toml's prompt_passes = 1 runs a prompt's GGUF matmuls in one int8 pass, as llama.cpp does: its
    first-token distribution is off float32's by int8 rounding carried through 30 layers (measured 1.5 points of
    probability here; 2.7 before down_proj's second pass changed its rounding: one pass's error is that chaotic),
    where the default two passes give float32's to rounding (0.006 points)."""
    import dataclasses

    one = load(dataclasses.replace(smollm2.spec, prompt_passes=1), dtype="float32", device="cpu")
    assert one.model.prompt_passes == 1 and smollm2.model.prompt_passes == 2
    ids = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                                add_generation_prompt=True, return_dict=False)

    def first(loaded):
        return torch.softmax(loaded.model(input_ids=torch.tensor([ids]), cache=StaticKV(loaded.model.shape),
                                          logits_to_keep=1, prompt=True).logits[0, -1].float(), -1)

    exact = first(smollm2_fp32)
    two, single = (first(smollm2) - exact).abs().max(), (first(one) - exact).abs().max()
    assert two < 1e-3
    assert 5 * two < single < 0.06


def test_a_server_is_keyed_on_prompt_passes(tmp_path):
    """A server started before prompt_passes changed in models.toml is not found (it computes prompts otherwise)."""
    from llmchat.serve.paths import server_key

    toml = tmp_path / "m.toml"
    keys = set()
    for extra in ("", "prompt_passes = 1\n", "prompt_passes = 2\n"):
        toml.write_text('[models.x]\ngguf = "x.gguf"\n' + extra)
        keys.add(server_key(load_registry(toml).get("x"), dtype=None, quant=None, device=None))
    assert len(keys) == 3
