"""``lensflow pipeline ...``: check a pipeline DAG file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.dag.compiler import CompiledPipeline, load_pipeline
from lensflow.shared.errors import ConfigError, LensflowError

app = typer.Typer(help="Pipeline DAG files.", no_args_is_help=True)
out = Console()
err_console = Console(stderr=True)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    plugins: Annotated[
        list[str] | None,
        typer.Option(
            "--plugins",
            help="Extra module(s) whose classifier plugins to register (over built-in keys).",
        ),
    ] = None,
    models: Annotated[
        bool,
        typer.Option(
            "--models/--no-models",
            help="Look up the models the nodes name on this machine; --no-models checks the "
            "DAG only, as the API and the desktop do.",
        ),
    ] = True,
    strict: Annotated[
        bool,
        typer.Option(
            help="A manifest model this machine neither has nor can build is an error (as "
            "when a worker here loads the pipeline), not a warning.",
        ),
    ] = False,
) -> None:
    """Compile FILE and print the DAG; print FILE:LINE: message for every error (exit 1).

    A model that is missing on this machine, but which the file names correctly, is a
    warning (the worker that runs the pipeline may have it); --strict makes it an error.
    """
    try:
        registry = plugin_registry(plugins or [], models=models, strict=strict)
        compiled = load_pipeline(file, registry=registry)
    except ConfigError as err:
        for issue in err.issues:
            where = str(issue.location) if issue.location else str(file)
            what = f"{issue.field}: " if issue.field else ""
            err_console.print(
                f"{where}: {what}{issue.message}", markup=False, highlight=False, soft_wrap=True
            )
        err_console.print(f"[red]{len(err.issues)} error(s)[/red] in {file}")
        raise typer.Exit(1) from None
    except LensflowError as err:
        err_console.print(f"{file}: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    print_pipeline(compiled, title=str(file))
    for warning in compiled.warnings:
        where = str(warning.location) if warning.location else str(file)
        err_console.print(
            f"warning: {where}: {warning.message}", markup=False, highlight=False, soft_wrap=True
        )


def print_pipeline(compiled: CompiledPipeline, *, title: str) -> None:
    """Print the compiled DAG: execution order, plugin, dependencies and readable conditions."""
    table = Table(title=f"pipeline {compiled.name!r} ({title})", title_justify="left")
    for column in ("#", "node", "plugin", "depends on", "runs when", "batch"):
        table.add_column(column, overflow="fold")
    for i, node in enumerate(compiled.nodes, start=1):
        plugin = f"{node.plugin.key or node.plugin.__qualname__} v{node.plugin.version}"
        state = "" if node.config.enabled else " (disabled)"
        batch = f"{node.config.batch.max_size} / {node.config.batch.max_wait_ms:g} ms"
        table.add_row(
            str(i),
            node.name + state,
            plugin,
            ", ".join(node.config.depends_on) or "-",
            node.condition.describe(),
            batch,
        )
    out.print(table)
    out.print(f"[green]ok[/green]: {len(compiled.nodes)} nodes, no errors")


def plugin_registry(
    modules: list[str], *, models: bool = True, strict: bool = True
) -> PluginRegistry:
    """The plugins (built-in, installed, and those of ``modules``) and the manifest's models.

    Args:
        modules: Extra modules whose plugins override built-in keys.
        models: Resolve model names through the shipped manifest (:class:`ManifestModelStore`);
            when false, model names are not looked up.
        strict: A model missing on this machine is an error (workers); else a warning.

    """
    store = ManifestModelStore(strict=strict) if models else None
    registry = default_registry().with_models(store)
    if not modules:
        return registry
    extended = registry.with_models(registry.models)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the working directory
    for name in modules:
        extended.scan_module(name, replace=True)  # named modules override built-ins
    return extended
