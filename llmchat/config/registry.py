"""models.toml (shipped + user overlays) → frozen `ModelSpec`s.

Overlays, later ones win, merged per alias (a user entry replaces the shipped entry of the same
alias as a whole; `default` is taken from the last file that sets it):
  1. the shipped models.toml (repo root, or inside the installed wheel),
  2. $XDG_CONFIG_HOME/llmchat/models.toml (default ~/.config/llmchat/models.toml), when present,
  3. the file named by $LLMCHAT_MODELS,
  4. the file given with --models.

Unknown keys are errors (exit 2, with file:line), so that a typo never silently does nothing.
No torch import here: `llmchat models` must be fast.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import ConfigError, ModelNotFound, UsageError
from ..paths import config_dir
from .families import FAMILIES as _FAMILY_TABLE

SOURCE_KEYS = ("path", "gguf", "package", "repo", "url")
# Remote inference engines a `url` entry can name (remote/engines.py has one adapter each).
ENGINES = ("llama.cpp", "vllm", "sglang", "openai")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda", "mps", "auto-split")
QUANTS = ("auto", "none", "int8", "int4")
# What people type for the same thing (llama.cpp's, PyTorch's and vLLM's spellings).
CHOICE_ALIASES = {"fp32": "float32", "f32": "float32", "float": "float32", "fp16": "float16", "f16": "float16",
                  "half": "float16", "bf16": "bfloat16", "gpu": "cuda", "cuda:0": "cuda", "metal": "mps",
                  "q8": "int8", "q8_0": "int8", "q4": "int4", "q4_0": "int4"}


def check_choice(flag: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    """A command-line choice (--dtype, --device, --quant) checked at parse time: UsageError (exit
    2) with a did-you-mean for a known spelling or a close match."""
    if value is None or value in allowed:
        return value
    guess = CHOICE_ALIASES.get(value.lower())
    if guess not in allowed:
        close = difflib.get_close_matches(value.lower(), allowed, n=1, cutoff=0.6)
        guess = close[0] if close else None
    raise UsageError(f"{flag} {value!r} is not one of {', '.join(allowed)}",
                     f"did you mean {flag} {guess}?" if guess else "pick one of those")
FAMILIES = tuple(_FAMILY_TABLE)
SAMPLING_KEYS: dict[str, type | tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": int,
    "min_p": (int, float),
    "repetition_penalty": (int, float),
    "max_tokens": int,
    "max_new_tokens": int,  # the older spelling, still read; `max_tokens` is the documented one
}
ENTRY_KEYS: dict[str, type | tuple[type, ...]] = {
    "path": str,
    "gguf": str,
    "package": str,
    "file": str,
    "repo": str,
    "url": str,
    "revision": str,
    "family": str,
    "dtype": str,
    "quant": str,
    "prompt_passes": int,
    "device": str,
    "max_memory": dict,
    "context": int,
    "system": str,
    "thinking": bool,
    "chat_template": str,
    "trust_remote_code": bool,
    "allow_pickle": bool,
    "allow_download": bool,
    "description": str,
    "sampling": dict,
    "engine": str,
    "model": str,
    "api_key_env": str,
    "tokenizer": str,
    "timeout": (int, float),
}
# Keys that only mean something for a remote engine (`url`), and keys that only mean something
# for weights loaded here.
REMOTE_ONLY = ("engine", "model", "api_key_env", "tokenizer", "timeout")
LOCAL_ONLY = ("dtype", "quant", "prompt_passes", "device", "max_memory", "trust_remote_code", "allow_pickle",
              "allow_download", "chat_template")
URL = re.compile(r"^(?:(?P<engine>[a-z.]+)\+)?(?P<url>https?://[^\s/]+(?:/\S*)?)$")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """One model as the registry describes it; nothing here has touched the disk or a device.

    `source` is one of "path" (a local Hugging Face folder), "gguf" (a local .gguf file),
    "package" (a file inside an installed Python package), "repo" (a Hugging Face repo id) or
    "remote" (an inference engine over HTTP). `location` is the folder/file path, "package/file",
    the repo id, or the server's base URL.

    Remote entries only: `engine` (one of ENGINES, or None: found by probing the server),
    `served_model` (the name the server serves; None: the first it lists), `api_key_env` (the
    NAME of the environment variable that holds the key, never the key), `tokenizer` (an alias,
    folder or repo id whose tokenizer gives exact token pieces locally) and `timeout` (seconds
    without a byte from the server before the stream counts as stalled).
    """

    alias: str
    source: str
    location: str
    revision: str | None = None
    family: str | None = None
    dtype: str = "auto"
    quant: str = "auto"  # auto | none | int8 | int4 (see model.load.resolve_quant)
    prompt_passes: int | None = None  # GGUF blocks on the CPU: a prompt's int8 activation passes (None: 2, or $LLMCHAT_PROMPT_PASSES)
    device: str = "auto"
    max_memory: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    context: int | None = None
    system: str | None = None
    thinking: bool | None = None
    chat_template: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    allow_download: bool = False
    description: str = ""
    sampling: Mapping[str, float | int] = field(default_factory=lambda: MappingProxyType({}))
    origin: str = ""  # "file:line" where the entry was defined, or "command line"
    engine: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    tokenizer: str | None = None
    timeout: float = 120.0

    @property
    def package(self) -> str | None:
        return self.location.split("/", 1)[0] if self.source == "package" else None

    @property
    def package_file(self) -> str | None:
        return self.location.split("/", 1)[1] if self.source == "package" else None


@dataclass(frozen=True)
class Registry:
    """All known aliases, the default alias and the files they came from."""

    default: str
    models: Mapping[str, ModelSpec]
    files: tuple[Path, ...]

    def get(self, name: str | None) -> ModelSpec:
        """An alias, a path to a model folder or .gguf file, or a Hugging Face repo id."""
        name = name or self.default
        if name in self.models:
            return self.models[name]
        return spec_from_argument(name, self)


def shipped_registry_path() -> Path:
    """models.toml inside the installed wheel, else at the root of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "models.toml", package.parent / "models.toml"):
        if candidate.is_file():
            return candidate
    raise ConfigError("the shipped models.toml is missing", "reinstall llmchat")


def user_registry_path() -> Path:
    return config_dir() / "models.toml"


def load_registry(extra: str | os.PathLike | None = None) -> Registry:
    files: list[Path] = [shipped_registry_path()]
    user = user_registry_path()
    if user.is_file():
        files.append(user)
    for label, value in (("LLMCHAT_MODELS", os.environ.get("LLMCHAT_MODELS")), ("--models", extra)):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ConfigError(f"{label} names {path}, which does not exist", "give the path of a models.toml file")
            files.append(path)
    default: str | None = None
    models: dict[str, ModelSpec] = {}
    for path in files:
        file_default, file_models = parse_file(path)
        default = file_default or default
        models.update(file_models)
    if default is None:
        raise ConfigError(f"{files[0]}: no `default = \"ALIAS\"` line", "add one at the top of models.toml")
    if default not in models:
        raise ConfigError(f"default model {default!r} is not defined in {', '.join(map(str, files))}",
                          f"add [models.{default}] or change `default`")
    return Registry(default=default, models=MappingProxyType(models), files=tuple(files))


def parse_file(path: Path) -> tuple[str | None, dict[str, ModelSpec]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "check the file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f"{path}:{line.group(1)}" if line else str(path)
        raise ConfigError(f"{where}: invalid TOML: {exc}", "fix the syntax (see README, 'Adding a model')") from None
    lines = _KeyLines(text)
    for key in data:
        if key not in ("default", "models"):
            raise ConfigError(f"{path}:{lines.find((key,))}: unknown top-level key {key!r}",
                              "only `default` and [models.ALIAS] tables are allowed")
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"{path}:{lines.find(('default',))}: `default` must be a string alias", "e.g. default = \"smollm2\"")
    entries = data.get("models", {})
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}:{lines.find(('models',))}: `models` must be a table", "use [models.ALIAS] headers")
    models = {alias: _parse_entry(path, lines, alias, entry) for alias, entry in entries.items()}
    return default, models


def _parse_entry(path: Path, lines: "_KeyLines", alias: str, entry: Any) -> ModelSpec:
    where = f"{path}:{lines.find(('models', alias))}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: models.{alias} must be a table", f"write [models.{alias}]")
    for key, value in entry.items():
        kwhere = f"{path}:{lines.find(('models', alias, key))}"
        if key not in ENTRY_KEYS:
            close = difflib.get_close_matches(key, ENTRY_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(ENTRY_KEYS)}"
            raise ConfigError(f"{kwhere}: unknown key {key!r} in models.{alias}", hint)
        if not isinstance(value, ENTRY_KEYS[key]) or (ENTRY_KEYS[key] is int and isinstance(value, bool)):
            raise ConfigError(f"{kwhere}: models.{alias}.{key} has the wrong type ({type(value).__name__})",
                              "see README, 'Adding a model'")
    sources = [k for k in SOURCE_KEYS if k in entry]
    if len(sources) != 1:
        found = " and ".join(sources) if sources else "none"
        raise ConfigError(f"{where}: models.{alias} needs exactly one source (path, gguf, package+file, repo or url); found {found}",
                          "keep one source key")
    source = sources[0]
    if source == "package" and "file" not in entry:
        raise ConfigError(f"{where}: models.{alias} has `package` but no `file`", "add file = \"NAME.gguf\"")
    if "file" in entry and source != "package":
        raise ConfigError(f"{where}: models.{alias}: `file` only goes with `package`", "remove it or use gguf = PATH")
    if "revision" in entry and source != "repo":
        raise ConfigError(f"{where}: models.{alias}: `revision` only goes with `repo`", "remove it")
    misplaced = [k for k in (LOCAL_ONLY if source == "url" else REMOTE_ONLY) if k in entry]
    if misplaced:
        what = "a remote engine (url) computes elsewhere" if source == "url" else "only a url entry names a server"
        raise ConfigError(f"{path}:{lines.find(('models', alias, misplaced[0]))}: models.{alias}: `{misplaced[0]}` "
                          f"does not apply here ({what})", "remove it")
    if source == "url" and not URL.match(entry["url"]) or source == "url" and "+" in entry["url"].split("://")[0]:
        raise ConfigError(f"{path}:{lines.find(('models', alias, 'url'))}: models.{alias}.url = {entry['url']!r} "
                          "is not an http(s) URL", "e.g. url = \"http://127.0.0.1:8080\" (set the engine with engine = …)")
    if "timeout" in entry and not entry["timeout"] > 0:
        raise ConfigError(f"{path}:{lines.find(('models', alias, 'timeout'))}: timeout must be positive seconds",
                          "e.g. timeout = 60")
    for key, allowed in (("dtype", DTYPES), ("quant", QUANTS), ("device", DEVICES), ("family", FAMILIES),
                         ("engine", ENGINES), ("prompt_passes", (1, 2))):
        if key in entry and entry[key] not in allowed:
            raise ConfigError(f"{path}:{lines.find(('models', alias, key))}: models.{alias}.{key} = {entry[key]!r} is not one of {', '.join(map(str, allowed))}",
                              "pick one of those")
    if "context" in entry and entry["context"] <= 0:
        raise ConfigError(f"{path}:{lines.find(('models', alias, 'context'))}: context must be positive", "remove it or give a token count")
    sampling = entry.get("sampling", {})
    for key, value in sampling.items():
        if key not in SAMPLING_KEYS:
            raise ConfigError(f"{path}:{lines.find(('models', alias, 'sampling', key))}: unknown sampling key {key!r}",
                              f"allowed: {', '.join(SAMPLING_KEYS)}")
        if not isinstance(value, SAMPLING_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"{path}:{lines.find(('models', alias, 'sampling', key))}: sampling.{key} must be a number", "see README")
    if "max_tokens" in sampling and "max_new_tokens" in sampling:
        raise ConfigError(f"{path}:{lines.find(('models', alias, 'sampling', 'max_tokens'))}: sampling has both max_tokens "
                          "and max_new_tokens", "keep max_tokens")
    sampling = {("max_new_tokens" if key == "max_tokens" else key): value for key, value in sampling.items()}
    base = path.parent
    if source == "package":
        location = f"{entry['package']}/{entry['file']}"
    elif source == "repo":
        location = entry["repo"]
        if not REPO_ID.match(location):
            raise ConfigError(f"{where}: {location!r} is not a Hugging Face repo id", "write it as OWNER/NAME")
    elif source == "url":
        location = entry["url"].rstrip("/")
    else:
        location = str((base / Path(entry[source]).expanduser()).resolve()) if not Path(entry[source]).expanduser().is_absolute() else str(Path(entry[source]).expanduser())
    template = entry.get("chat_template")
    if template:
        template = str((base / Path(template).expanduser()).resolve())
    return ModelSpec(
        alias=alias,
        source="remote" if source == "url" else source,
        location=location,
        revision=entry.get("revision"),
        family=entry.get("family"),
        dtype=entry.get("dtype", "auto"),
        quant=entry.get("quant", "auto"),
        prompt_passes=entry.get("prompt_passes"),
        device=entry.get("device", "auto"),
        max_memory=MappingProxyType({str(k): str(v) for k, v in entry.get("max_memory", {}).items()}),
        context=entry.get("context"),
        system=entry.get("system"),
        thinking=entry.get("thinking"),
        chat_template=template,
        trust_remote_code=entry.get("trust_remote_code", False),
        allow_pickle=entry.get("allow_pickle", False),
        allow_download=entry.get("allow_download", False),
        description=entry.get("description", ""),
        sampling=MappingProxyType(dict(sampling)),
        origin=where,
        engine=entry.get("engine"),
        served_model=entry.get("model"),
        api_key_env=entry.get("api_key_env"),
        tokenizer=entry.get("tokenizer"),
        timeout=float(entry.get("timeout", 120.0)),
    )


def spec_from_argument(name: str, registry: Registry) -> ModelSpec:
    """`-m` given something that is not an alias: a folder, a .gguf file, a repo id, or a server's
    URL (`http://host:port`, or `ENGINE+http://…` to skip probing which engine it is)."""
    url = URL.match(name)
    if url:
        engine = url.group("engine")
        if engine is not None and engine not in ENGINES:
            raise UsageError(f"unknown engine {engine!r} in {name!r}", f"use one of {', '.join(ENGINES)}, e.g. vllm+{url.group('url')}")
        return ModelSpec(alias=url.group("url").rstrip("/"), source="remote", location=url.group("url").rstrip("/"),
                         engine=engine, api_key_env="LLMCHAT_API_KEY" if os.environ.get("LLMCHAT_API_KEY") else None,
                         origin="command line")
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or name.endswith(".gguf") or os.sep in name and path.exists()
    if path.is_dir():
        return ModelSpec(alias=path.name, source="path", location=str(path.resolve()), origin="command line")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UsageError(f"{path} is a file but not a .gguf model", "give a model folder, a .gguf file, an alias or a repo id")
        return ModelSpec(alias=path.stem, source="gguf", location=str(path.resolve()), origin="command line")
    if looks_like_path:
        raise ModelNotFound(f"model path {path} does not exist", "check the path, or run `llmchat models` for aliases")
    if REPO_ID.match(name):
        return ModelSpec(alias=name, source="repo", location=name, origin="command line")
    close = difflib.get_close_matches(name, list(registry.models), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `llmchat models` to list aliases"
    raise ModelNotFound(f"unknown model {name!r}", hint)


class _KeyLines:
    """Finds the 1-based line where a table or key was written, for error messages."""

    _key = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")

    def __init__(self, text: str):
        self.positions: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("[") and not stripped.startswith("[["):
                table = self._header_path(stripped) or table
                self.positions.setdefault(table, number)
                continue
            match = self._key.match(line)
            if match:
                key = next(g for g in match.groups() if g is not None)
                self.positions.setdefault(table + (key,), number)

    @staticmethod
    def _header_path(header: str) -> tuple[str, ...]:
        try:
            node: Any = tomllib.loads(header.split("#", 1)[0] if "]" in header.split("#", 1)[0] else header)
        except tomllib.TOMLDecodeError:
            return ()
        path: list[str] = []
        while isinstance(node, dict) and len(node) == 1:
            key = next(iter(node))
            path.append(key)
            node = node[key]
        return tuple(path)

    def find(self, path: tuple[str, ...]) -> int:
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return 1
