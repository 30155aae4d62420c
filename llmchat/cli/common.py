"""Shared option parsing for the commands."""

from __future__ import annotations

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
