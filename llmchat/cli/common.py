"""Shared option parsing for the commands."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import typer

# The load options every model-running command takes (ask, chat, next, serve): one definition, one help text.
def _choice(flag: str, allowed_name: str):
    def check(value):
        from ..config import registry

        return registry.check_choice(flag, value, getattr(registry, allowed_name))
    return check


MODEL_OPTION = typer.Option(None, "-m", "--model", metavar="MODEL", help="Alias, model folder, .gguf file or repo id.")
DTYPE_OPTION = typer.Option(None, "--dtype", metavar="DTYPE", callback=_choice("--dtype", "DTYPES"),
                            help="auto, float32, bfloat16, float16.")
QUANT_OPTION = typer.Option(None, "--quant", metavar="QUANT", callback=_choice("--quant", "QUANTS"),
                            help="auto (a GGUF's own blocks), none, int8, int4: CPU weights.")
DEVICE_OPTION = typer.Option(None, "--device", metavar="DEVICE", callback=_choice("--device", "DEVICES"),
                             help="auto, cpu, cuda, mps, auto-split.")
DOWNLOAD_OPTION = typer.Option(False, "--download", help="Download a repo that is not cached.")
FORCE_OPTION = typer.Option(False, "--force", help="Load even when the model looks too big for free memory.")


@functools.lru_cache(maxsize=1)
def _shipped_sampling() -> tuple[str, dict]:
    """The default model's [sampling] table from the shipped models.toml, read once (no registry
    validation at import: help text must not slow `tokenize` down)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    from ..config.registry import shipped_registry_path

    try:
        data = tomllib.loads(shipped_registry_path().read_text(encoding="utf-8"))
        alias = data.get("default", "smollm2")
        return alias, dict(data["models"][alias].get("sampling", {}))
    except (OSError, KeyError, ValueError, TypeError):
        return "smollm2", {}


def _default_of(key: str) -> str:
    """"default: the model's [sampling] in models.toml, else 0.7 (smollm2: 0.2)"."""
    from ..engine.sampling import SamplingParams

    base = SamplingParams().to_dict()[key]
    alias, sampling = _shipped_sampling()
    value = sampling.get(key, sampling.get("max_new_tokens") if key == "max_tokens" else None)
    return f"default: the model's [sampling] in models.toml, else {base} ({alias}: {value if value is not None else base})"


# The sampling options of ask and chat: one definition, with where their defaults come from.
TEMPERATURE_OPTION = typer.Option(None, "-t", "--temperature", metavar="X", help="0 = greedy. " + _default_of("temperature") + ".")
TOP_P_OPTION = typer.Option(None, "--top-p", metavar="P", help="Keep the smallest set of tokens holding P. " + _default_of("top_p") + ".")
TOP_K_OPTION = typer.Option(None, "--top-k", metavar="K", help="Keep the K most probable tokens (0 = all). " + _default_of("top_k") + ".")
MIN_P_OPTION = typer.Option(None, "--min-p", metavar="P", help="Drop tokens below P × the top one's probability. " + _default_of("min_p") + ".")
REPETITION_OPTION = typer.Option(None, "--repetition-penalty", metavar="X",
                                 help="> 1 discourages repeats. " + _default_of("repetition_penalty") + ".")
MAX_TOKENS_OPTION = typer.Option(None, "-n", "--max-tokens", metavar="N", help="Most tokens to generate. " + _default_of("max_tokens") + ".")


@dataclass
class State:
    """Global options, set by the root callback."""

    models_path: str | None = None
    debug: bool = False

    def registry(self):
        from ..config.registry import load_registry

        return load_registry(self.models_path)


def sampling_params(spec, *, temperature=None, top_p=None, top_k=None, min_p=None, repetition_penalty=None,
                    seed=None, max_tokens=None, stop=None):
    """Defaults ← the model's [sampling] table in models.toml ← command-line options.

    Without --seed a random seed is drawn here, so that every answer can be reproduced (it is
    reported with -v and in --json)."""
    import secrets

    from ..engine.sampling import SamplingParams

    base = dict(spec.sampling)
    if "max_new_tokens" in base:
        base["max_new_tokens"] = int(base["max_new_tokens"])
    params = SamplingParams().with_overrides(**base)
    return params.with_overrides(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                                 repetition_penalty=repetition_penalty, max_new_tokens=max_tokens,
                                 seed=seed if seed is not None else secrets.randbits(31),
                                 stop=tuple(stop) if stop else None)


def open_source(spec, registry, *, reuse: bool = True, dtype=None, device=None, quant=None, download: bool = False,
                force: bool = False, progress=None):
    """The ModelSource for `spec`: a `remote.source.RemoteEngine` for a server (`url` entries and
    `-m URL`), else the weights loaded here (`LocalModel`; `reuse`: keep a prompt cache)."""
    if spec.source == "remote":
        from ..remote.source import RemoteEngine

        local = None
        if spec.tokenizer:
            from ..model.files import tokenizer_folder
            from ..tokenizer.lite import LiteTokenizer

            tspec = registry.get(spec.tokenizer)
            local = LiteTokenizer(tokenizer_folder(tspec, download=download, check=False), tspec)
        return RemoteEngine(spec, local_tokenizer=local)
    from ..engine.source import LocalModel
    from ..model.load import load
    from ..render.progress import terminal_progress

    return LocalModel(load(spec, dtype=dtype, device=device, quant=quant, download=download,
                           progress=progress or terminal_progress(), force=force), reuse=reuse)
