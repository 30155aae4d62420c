"""ModelSpec → LoadedModel. The only module that touches model files, caches and devices.

torch and transformers are imported lazily, inside the functions that need them, so that
`llmchat --help`, `llmchat models` and `llmchat tokenize` stay fast.

Sources:
- path:    a local Hugging Face folder, checked before transformers sees it (safetensors only
           unless allow_pickle; remote code refused unless trust_remote_code).
- gguf / package: a GGUF file, pre-flight checked, then dequantised ONCE through transformers'
           GGUF support and cached as a plain Hugging Face folder under $XDG_CACHE_HOME/llmchat/gguf/
           (keyed by path, size and mtime). The tokenizer is cached first and on its own, so that
           `tokenize` never dequantises weights.
- repo:    the Hugging Face cache, offline unless download is allowed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LlmchatError, ModelNotFound, ModelRejected, OutOfMemory, UsageError
from .families import Family, detect_family
from .gguf_cache import (cache_root, ensure_gguf_tokenizer, ensure_gguf_weights, first_line, gguf_cache_dir,  # noqa: F401
                         gguf_file, quiet_transformers, status)
from .registry import ModelSpec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class LoadedModel:
    """A model ready for the engine.

    `folder` is a directory plain transformers can load (for a GGUF source, the cached
    conversion). `eos_ids` lists every id that ends generation: the generation config's eos
    ids (several where it lists several), the tokenizer's eos and the family's end-of-turn
    tokens. `converted` is True when this load ran the GGUF conversion (or packing).
    """

    model: Any
    tokenizer: Any
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
    backend: str = "transformers"  # "llmchat" (fastllama.py, CPU) or "transformers"


# ---------------------------------------------------------------------------- locations (no torch)

def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(spec: ModelSpec, download: bool = False) -> Path:
    """The snapshot folder of a repo id: from the local HF cache, or downloaded when allowed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.py"]
    if spec.allow_pickle:
        patterns += ["*.bin"]
    try:
        return Path(snapshot_download(spec.location, revision=spec.revision, local_files_only=True))
    except LocalEntryNotFoundError:
        if not (download or spec.allow_download):
            raise ModelNotFound(
                f"model repo {spec.location} is not in the Hugging Face cache ({hub_cache_dir()})",
                f"fetch it with `hf download {spec.location}` or pass --download") from None
    except Exception as exc:  # bad revision name, unreadable cache
        raise ModelNotFound(f"cannot read {spec.location} from the Hugging Face cache: {exc}", "check the repo id and revision") from None
    try:
        return Path(snapshot_download(spec.location, revision=spec.revision, allow_patterns=patterns))
    except Exception as exc:
        raise ModelNotFound(f"could not download {spec.location}: {str(exc).splitlines()[0]}",
                            "check the repo id, your network and `hf auth login` for gated models") from None


def model_folder(spec: ModelSpec, download: bool = False) -> Path:
    """The Hugging Face folder of a path or repo source."""
    if spec.source == "path":
        folder = Path(spec.location)
        if not folder.exists():
            raise ModelNotFound(f"model folder {folder} does not exist", "check the path in models.toml or on the command line")
        return folder
    return repo_folder(spec, download)


def tokenizer_folder(spec: ModelSpec, download: bool = False, progress: bool = True) -> Path:
    """A folder with tokenizer.json (+ config.json) for this model, without loading weights."""
    if spec.source in ("gguf", "package"):
        return ensure_gguf_tokenizer(gguf_file(spec), progress)
    folder = model_folder(spec, download)
    check_folder(folder, spec)
    return folder


def availability(spec: ModelSpec) -> tuple[bool, str]:
    """Is this model usable here without the network? (yes/no and why) — cheap, no torch."""
    try:
        if spec.source in ("gguf", "package"):
            path = gguf_file(spec)
            folder = gguf_cache_dir(path)
            cached = (folder / "model.safetensors").is_file() or any(folder.glob("packed-*.safetensors"))
            return True, "cached" if cached else "GGUF (packed on first load)"
        if spec.source == "repo":
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(spec.location, "config.json", revision=spec.revision)
            return (True, "in the HF cache") if isinstance(found, str) else (False, "not downloaded")
        folder = model_folder(spec)
        return ((True, "local folder") if (folder / "config.json").is_file() else (False, "no config.json in folder"))
    except LlmchatError as exc:
        return False, exc.message


def size_on_disk(spec: ModelSpec) -> int | None:
    try:
        if spec.source in ("gguf", "package"):
            return gguf_file(spec).stat().st_size
        folder = model_folder(spec) if spec.source == "path" else None
        if spec.source == "repo":
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(spec.location, "config.json", revision=spec.revision)
            folder = Path(found).parent if isinstance(found, str) else None
        if folder is None:
            return None
        return sum(f.stat().st_size for f in folder.iterdir()
                   if f.is_file() and f.suffix in (".safetensors", ".bin", ".gguf") and not f.name.startswith("packed-"))
    except (LlmchatError, OSError):
        return None


# ---------------------------------------------------------------------------- folder checks

def check_folder(folder: Path, spec: ModelSpec) -> dict:
    """Refuse what we must not load before transformers sees it; returns config.json."""
    if not folder.is_dir():
        raise ModelNotFound(f"{folder} is not a folder", "give a model folder, a .gguf file, an alias or a repo id")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelNotFound(f"{folder} is not a model folder (no config.json)", "point -m at a Hugging Face model folder or a .gguf file")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelRejected(f"{config_path} is not valid JSON: {exc}", "the model folder is corrupt") from None
    files = [f.name for f in folder.iterdir()]
    has_safetensors = any(name.endswith(".safetensors") for name in files)
    pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES) and not name.startswith("training_args"))
    if not has_safetensors:
        if not pickles:
            raise ModelRejected(f"{folder} has no weights (*.safetensors)", "the download is incomplete or the folder is not a model")
        if not spec.allow_pickle:
            raise ModelRejected(f"{folder} has only pickle weights ({pickles[0]}); loading pickle can run arbitrary code",
                                "convert them to safetensors, or set allow_pickle = true / pass --allow-pickle if you trust the source")
    if has_safetensors:
        from .safetensors_check import check_safetensors

        for name in sorted(files):
            if name.endswith(".safetensors"):
                check_safetensors(folder / name)
    if _needs_remote_code(config) and not spec.trust_remote_code:
        raise ModelRejected(f"{folder} needs custom Python code from the model repo (auto_map in config.json)",
                            "set trust_remote_code = true in models.toml or pass --trust-remote-code if you trust the source")
    return config


def _needs_remote_code(config: dict) -> bool:
    if not config.get("auto_map"):
        return False  # (checked first: importing transformers costs a second or more)
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return config.get("model_type") not in CONFIG_MAPPING_NAMES


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
    from .registry import QUANTS

    if name not in QUANTS:
        raise UsageError(f"--quant {name!r} is not one of {', '.join(QUANTS)}", "pick one of those")
    if name in ("int4", "int8") and (device != "cpu" or split):
        raise UsageError(f"--quant {name} runs on the CPU only (torch's packed CPU kernels); the device here is {device}",
                         "use --device cpu, or --quant none on this device")
    return name


def load(spec: ModelSpec, *, dtype: str | None = None, device: str | None = None, quant: str | None = None,
         download: bool = False, progress: bool = True, force: bool = False, backend: str = "auto") -> LoadedModel:
    """Load a model and its tokenizer; dtype/device/quant override the spec ("auto" picks).

    On the CPU, Llama-shaped models run on llmchat's own forward pass (fastllama.py) with weights
    kept as `quant` says (a GGUF's 4-bit blocks repacked as they are by default); everything else
    runs on transformers' modeling code (`backend="transformers"` forces that, e.g. as the
    reference in tests and benchmarks). Unless `force`, a model that clearly does not fit the
    device's free memory is refused first (OutOfMemory, exit 6; see memory.py)."""
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
        from .fast_load import load_fast

        model, converted, why = load_fast(spec, folder, config, quant_name, torch_dtype, progress, force, context)
    if model is None and quant_name in ("int4", "int8"):
        raise UsageError(f"--quant {quant_name} needs llmchat's own forward pass (Llama, Mistral, Qwen2 shapes on the CPU), "
                         f"which {spec.alias} cannot use: {why}", "use --quant none or auto")
    if model is not None:
        weights, runs_on = model.quant_label, "llmchat"
    else:
        if gguf:
            folder, converted = ensure_gguf_weights(gguf_file(spec), progress)
        model = _load_transformers(spec, folder, config, context, torch_dtype, device_name, split, progress and not converted, force)
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
        eos_ids=eos_ids(_generation_eos(folder), tokenizer.eos_token_id, tokenizer.get_vocab(), family),
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
    from .lite_tokenizer import LiteTokenizer, usable

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


def _generation_eos(folder: Path):
    try:
        return json.loads((folder / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return None


def _load_transformers(spec, folder, config, context, torch_dtype, device_name, split, progress, force):
    import torch

    if not force and not split:
        from .memory import check_fits

        check_fits(spec.alias, folder, config, context, torch_dtype, device_name)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": spec.trust_remote_code}
    if not spec.allow_pickle:
        kwargs["use_safetensors"] = True
    if split:
        kwargs["device_map"] = "auto"
        if spec.max_memory:
            kwargs["max_memory"] = {(int(k) if k.isdigit() else k): v for k, v in spec.max_memory.items()}
        kwargs["offload_folder"] = str(cache_root() / "offload" / spec.alias.replace("/", "--"))
    elif device_name != "cpu":
        kwargs["device_map"] = device_name
    with quiet_transformers(), status(f"loading {spec.alias}", progress):
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


def context_length(config: dict) -> int:
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length"):
        value = config.get(key) or (config.get("text_config") or {}).get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


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


