"""``lensflow configs ...``: the configs lensflow ships, where they are, and a copy to edit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.shared.errors import ConfigError
from lensflow.shared.paths import HOME_ENV, shipped_config, shipped_configs_dir

app = typer.Typer(
    help="Shipped configs: the model manifest, example edge/cloud/pipeline configs, the demo's.",
    no_args_is_help=True,
)
out = Console()
err_console = Console(stderr=True)


def _names() -> list[str]:
    root = shipped_configs_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@app.command("list")
def list_configs() -> None:
    """List the shipped configs and the file each name resolves to ($LENSFLOW_HOME first)."""
    table = Table(title="shipped configs", title_justify="left")
    table.add_column("name")
    table.add_column("used from", overflow="fold")
    for name in _names():
        table.add_row(name, str(shipped_config(name)))
    out.print(table)
    home = os.environ.get(HOME_ENV)
    out.print(
        f"${HOME_ENV} is {home!r}: its configs/ overrides these by name"
        if home
        else f"set ${HOME_ENV} to a folder whose configs/ holds your own versions"
    )


@app.command("path")
def path(
    name: Annotated[str, typer.Argument(help="A shipped config, e.g. demo/pipeline.yaml.")],
) -> None:
    """Print the file a shipped config name resolves to (for other commands' arguments)."""
    try:
        print(shipped_config(name))
    except ConfigError as err:
        err_console.print(f"error: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("copy")
def copy(
    dest: Annotated[
        Path | None,
        typer.Argument(help=f"Folder to copy into (default: ${HOME_ENV}/configs, else ./configs)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite files that exist.")] = False,
) -> None:
    """Copy the shipped configs into a folder, to edit them; existing files are kept."""
    home = os.environ.get(HOME_ENV)
    target = dest or (Path(home) / "configs" if home else Path("configs"))
    copied, kept = 0, 0
    for name in _names():
        where = target / name
        if where.exists() and not force:
            kept += 1
            continue
        where.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped_configs_dir() / name, where)
        copied += 1
    out.print(f"copied {copied} config(s) into {target}; kept {kept} that exist (--force)")
