"""ModelSpec → LoadedModel: weights on a device, the tokenizer, the stop ids.

Two backends. On the CPU, Llama-shaped models run on llmchat's own forward pass (model/cpu/), with
a GGUF's quantized blocks repacked as they are; everything else (CUDA, MPS, auto-split, MoE/MLA
models) runs on transformers' modeling code, a GGUF first dequantised ONCE into a cached Hugging
Face folder (model/gguf/convert.py). Where the files are and what is refused before any library
reads them is model/files.py. torch and transformers are imported inside the functions that need
them, so `llmchat --help`, `models` and `tokenize` stay fast. Progress goes to a `Progress`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config.families import Family, detect_family
from ..config.registry import QUANTS, ModelSpec
from ..errors import LlmchatError, ModelRejected, OutOfMemory, UsageError, first_line
from ..hf_folder import context_length, generation_eos
from ..paths import cache_dir
from .files import check_folder, model_folder
from .gguf.convert import ensure_gguf_tokenizer, ensure_gguf_weights, gguf_file
from .progress import SILENT, Progress, quiet_transformers
from ..tokenizer import Tokenizer


class CausalLM(Protocol):
    """What the engine calls: transformers' causal LMs and model/cpu/llama.CpuLlama answer alike
    (`out.logits` [batch, positions, vocab], `out.cache` to pass back on the next call)."""

    device: Any

    def __call__(self, *, input_ids: Any, cache: Any, use_cache: bool, logits_to_keep: int) -> Any: ...


@dataclass
class LoadedModel:
    """A model ready for the engine.

    `folder` is a directory plain transformers can load (for a GGUF source, the cached
    conversion). `eos_ids` lists every id that ends generation: the generation config's eos
    ids (several where it lists several), the tokenizer's eos and the family's end-of-turn
    tokens. `converted` is True when this load ran the GGUF conversion (or packing).
    """

    model: CausalLM
    tokenizer: Tokenizer
    spec: ModelSpec
    device: str
    dtype: Any
    context_length: int
    eos_ids: tuple[int, ...]
    family: Family
    folder: Path
    load_seconds: float
    converted: bool = False
    quant: str = "none"  # how the weights are held: none, int8, int4, or gguf's own blocks ("q4_1+q8_0")
    backend: str = "transformers"  # "llmchat" (model/cpu/, CPU) or "transformers"


# ---------------------------------------------------------------------------- load

def resolve_dtype(name: str, device: str):
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    # CPU: float32. bfloat16 is faster per step once warm, but measured on a Zen 4 with AVX-512
    # BF16 (torch 2.13), every new sequence length costs up to ~1-2 s the first time it is seen
    # (attention kernels built per shape), so a chat whose context keeps growing would crawl.
    return torch.float32


def resolve_device(name: str) -> str:
    import torch

    if name in ("auto", "auto-split"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available", "use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps was asked for, but MPS is not available", "use --device cpu or auto")
    return name


def resolve_quant(name: str, device: str, split: bool) -> str:
    """`quant` as asked ("auto" unless set); int4/int8 need the CPU path (torch's packed kernels)."""
    if name not in QUANTS:
        raise UsageError(f"--quant {name!r} is not one of {', '.join(QUANTS)}", "pick one of those")
    if name in ("int4", "int8") and (device != "cpu" or split):
        raise UsageError(f"--quant {name} runs on the CPU only (torch's packed CPU kernels); the device here is {device}",
                         "use --device cpu, or --quant none on this device")
    return name


def load(spec: ModelSpec, *, dtype: str | None = None, device: str | None = None, quant: str | None = None,
         download: bool = False, progress: Progress = SILENT, force: bool = False, backend: str = "auto") -> LoadedModel:
    """Load a model and its tokenizer; dtype/device/quant override the spec ("auto" picks).

    On the CPU, Llama-shaped models run on llmchat's own forward pass (model/cpu/) with weights
    kept as `quant` says (a GGUF's 4-bit blocks repacked as they are by default); everything else
    runs on transformers' modeling code (`backend="transformers"` forces that, e.g. as the
    reference in tests and benchmarks). Unless `force`, a model that clearly does not fit the
    device's free memory is refused first (OutOfMemory, exit 6; see model/memory.py)."""
    started = time.perf_counter()
    split = (device or spec.device) == "auto-split"
    device_name = resolve_device(device or spec.device)
    torch_dtype = resolve_dtype(dtype or spec.dtype, device_name)
    quant_name = resolve_quant(quant or spec.quant, device_name, split)
    gguf = spec.source in ("gguf", "package")
    converted, model, why = False, None, "it does not run on the CPU"
    if gguf:
        folder = ensure_gguf_tokenizer(gguf_file(spec), progress)
        config = json.loads((folder / "config.json").read_text())
    else:
        folder = model_folder(spec, download)
        config = check_folder(folder, spec)
    context = spec.context or context_length(config)
    if device_name == "cpu" and not split and backend != "transformers":
        from .cpu.load import load_cpu

        model, converted, why = load_cpu(spec, folder, config, quant_name, torch_dtype, progress, force, context)
    if model is None and quant_name in ("int4", "int8"):
        raise UsageError(f"--quant {quant_name} needs llmchat's own forward pass (Llama, Mistral, Qwen2 shapes on the CPU), "
                         f"which {spec.alias} cannot use: {why}", "use --quant none or auto")
    if model is not None:
        weights, runs_on = model.quant_label, "llmchat"
    else:
        if gguf:
            folder, converted = ensure_gguf_weights(gguf_file(spec), progress)
        model = _load_transformers(spec, folder, config, context, torch_dtype, device_name, split,
                                   SILENT if converted else progress, force)
        weights, runs_on = "none", "transformers"
    tokenizer = _load_tokenizer(spec, folder, backend)
    if spec.chat_template:
        try:
            tokenizer.chat_template = Path(spec.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelRejected(f"cannot read chat template {spec.chat_template}: {exc.strerror}", "fix `chat_template` in models.toml") from None
    family = detect_family(spec.family, config.get("model_type"), tokenizer.chat_template, spec.thinking)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        device=str(model.device) if not split else "auto-split",
        dtype=torch_dtype,
        context_length=context,
        eos_ids=eos_ids(generation_eos(folder), tokenizer.eos_token_id, tokenizer.get_vocab(), family),
        family=family,
        folder=folder,
        load_seconds=time.perf_counter() - started,
        converted=converted,
        quant=weights,
        backend=runs_on,
    )


def _load_tokenizer(spec: ModelSpec, folder: Path, backend: str):
    """The lite tokenizer (tokenizers + templates.py, no transformers import) where it can stand
    in; transformers' AutoTokenizer otherwise, and always for backend="transformers"."""
    from ..tokenizer.lite import LiteTokenizer, usable

    if backend != "transformers" and usable(folder, spec):
        return LiteTokenizer(folder, spec)
    with quiet_transformers():
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=spec.trust_remote_code)
        except LlmchatError:
            raise
        except Exception as exc:
            raise ModelRejected(f"cannot load the tokenizer of {spec.alias} from {folder}: {first_line(exc)}",
                                "the files are corrupt, incomplete or of an unsupported tokenizer") from None


def _load_transformers(spec, folder, config, context, torch_dtype, device_name, split, progress, force):
    import torch

    if not force and not split:
        from .memory import check_checkpoint_fits

        check_checkpoint_fits(spec.alias, folder, config, context, torch_dtype, device_name)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": spec.trust_remote_code}
    if not spec.allow_pickle:
        kwargs["use_safetensors"] = True
    if split:
        kwargs["device_map"] = "auto"
        if spec.max_memory:
            kwargs["max_memory"] = {(int(k) if k.isdigit() else k): v for k, v in spec.max_memory.items()}
        kwargs["offload_folder"] = str(cache_dir() / "offload" / spec.alias.replace("/", "--"))
    elif device_name != "cpu":
        kwargs["device_map"] = device_name
    with quiet_transformers(), progress.step(f"loading {spec.alias}"):
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        except torch.OutOfMemoryError:
            raise OutOfMemory(f"not enough memory to load {spec.alias} in {str(torch_dtype).removeprefix('torch.')} on {device_name}",
                              "try --dtype bfloat16, a smaller model or --device auto-split") from None
        except LlmchatError:
            raise
        except Exception as exc:
            raise ModelRejected(f"cannot load {spec.alias} from {folder}: {first_line(exc)}",
                                "the files are corrupt, incomplete or of an unsupported architecture") from None
    model.eval()
    return model


def eos_ids(generation_eos, tokenizer_eos, vocab: dict[str, int], family: Family) -> tuple[int, ...]:
    """Every id that ends generation: generation config (int or list), tokenizer eos, end-of-turn tokens."""
    ids: list[int] = []
    for value in (generation_eos, tokenizer_eos):
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    for token in family.end_of_turn:
        if token in vocab and vocab[token] not in ids:
            ids.append(vocab[token])
    return tuple(ids)
