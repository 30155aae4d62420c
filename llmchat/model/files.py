"""Where a model's files are, and what is refused before any library reads them. No torch.

Sources (see config/registry.py): `path` (a local Hugging Face folder), `gguf` / `package` (a GGUF
file; its tokenizer and config are extracted into the cache by model/gguf/convert.py), `repo` (the
Hugging Face cache, offline unless download is allowed). A folder is checked before transformers
sees it: safetensors only unless allow_pickle, remote code refused unless trust_remote_code, every
safetensors header sane.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config.registry import ModelSpec
from ..errors import LlmchatError, ModelNotFound, ModelRejected
from ..hf_folder import is_packed, weights_size
from .gguf.convert import ensure_gguf_tokenizer, gguf_cache_dir, gguf_file
from .progress import SILENT, Progress

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")



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


def tokenizer_folder(spec: ModelSpec, download: bool = False, progress: Progress = SILENT, check: bool = True) -> Path:
    """A folder with tokenizer.json (+ config.json) for this model, without loading weights.

    A GGUF's tokenizer is extracted once, then read from the cache. `check=False` (tokenize) skips
    `check_folder`, which guards weight and code loading, which tokenize never does (and which
    imports transformers for a config with an auto_map)."""
    if spec.source in ("gguf", "package"):
        return ensure_gguf_tokenizer(gguf_file(spec), progress)
    folder = model_folder(spec, download)
    if check:
        check_folder(folder, spec)
    elif not folder.is_dir():
        raise ModelNotFound(f"{folder} is not a folder", "give a model folder, a .gguf file, an alias or a repo id")
    elif not (folder / "tokenizer.json").is_file():
        raise ModelNotFound(f"{folder} has no tokenizer.json",
                            "tokenize reads the fast tokenizer file: point -m at a Hugging Face folder or a .gguf file")
    return folder


def availability(spec: ModelSpec) -> tuple[bool, str]:
    """Is this model usable here without the network? (yes/no and why) — cheap, no torch."""
    try:
        if spec.source in ("gguf", "package"):
            path = gguf_file(spec)
            folder = gguf_cache_dir(path)
            cached = (folder / "model.safetensors").is_file() or any(is_packed(f) for f in folder.glob("*.safetensors"))
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
        return weights_size(folder)
    except (LlmchatError, OSError):
        return None


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
        from .safetensors_header import check_safetensors

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
