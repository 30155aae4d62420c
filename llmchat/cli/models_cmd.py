"""`llmchat models` — the registry and what is available here; `llmchat models show ALIAS`."""

from __future__ import annotations

import json

import typer

from . import app
from ..render.console import make_console
from .common import DOWNLOAD_OPTION

models_app = typer.Typer(help="List the models in the registry, or show one in detail.", invoke_without_command=True,
                         rich_markup_mode=None)
app.add_typer(models_app, name="models")


@models_app.callback()
def list_models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List aliases: source, family, size on disk, whether they are usable here."""
    if ctx.invoked_subcommand:
        return
    from ..model.files import availability, size_on_disk

    registry = ctx.obj.registry()
    rows = []
    for alias, spec in registry.models.items():
        if spec.source == "remote":
            from ..remote.source import reachability

            ok, why = reachability(spec)
        else:
            ok, why = availability(spec)
        rows.append({"alias": alias, "default": alias == registry.default, "source": spec.source,
                     "location": spec.location, "family": spec.family,
                     "size": None if spec.source == "remote" else size_on_disk(spec),
                     "available": ok, "why": why, "description": spec.description,
                     "fetch": f"hf download {spec.location}" if spec.source == "repo" and not ok else None})
    if as_json:
        print(json.dumps({"default": registry.default, "files": [str(f) for f in registry.files], "models": rows},
                         indent=2, ensure_ascii=True))
        return
    from ..render.models_table import models_table

    from ..config.registry import user_registry_path

    models_table(make_console(), rows, str(user_registry_path()))


@models_app.command("show")
def show(
    ctx: typer.Context,
    alias: str = typer.Argument(None, help="Alias, model folder, .gguf file or repo id (default: the default model)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    download: bool = DOWNLOAD_OPTION,
) -> None:
    """Architecture, size, context, tokenizer and template details of one model."""
    from ..model.describe import describe
    from ..render.progress import terminal_progress

    registry = ctx.obj.registry()
    spec = registry.get(alias)
    if spec.source == "remote":
        from ..remote.source import describe_remote
        from .common import open_source

        info = describe_remote(open_source(spec, registry))
    else:
        info = describe(spec, download, progress=terminal_progress())
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=True))
        return
    from ..render.models_table import model_details

    model_details(make_console(), info)
