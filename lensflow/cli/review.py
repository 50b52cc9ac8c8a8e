"""``lensflow review``: the desktop review app; ``lensflow bench review``: its benchmark."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lensflow.shared.errors import LensflowError

out = Console()


def review(
    api: Annotated[
        str | None, typer.Option("--api", help="API URL (default: the remembered one).")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", envvar="LENSFLOW_API_KEY", help="API key (remembered once it works)."
        ),
    ] = None,
) -> None:
    """Review crops: browse, inspect, relabel from the keyboard, export, push configs."""
    try:
        from lensflow.desktop.app import run
    except ImportError as err:
        out.print(
            f"the review app needs the desktop extra (pip install 'lensflow[desktop]'): {err}",
            markup=False,
        )
        raise typer.Exit(1) from None
    raise typer.Exit(run(api=api, key=key))


def bench_review(
    rows: Annotated[int, typer.Option(min=1000, help="Results to seed (PostgreSQL).")] = 100_000,
    scroll: Annotated[int, typer.Option(min=1, help="Rows to scroll through.")] = 1000,
    folder: Annotated[Path, typer.Option(help="Scratch folder.")] = Path("var/bench/review"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
) -> None:
    """Review app on N seeded results: time to first page and to scroll 1,000 rows (offscreen)."""
    from lensflow.bench.review import run_review_bench

    folder.mkdir(parents=True, exist_ok=True)
    try:
        with out.status(f"seeding {rows:,} results and serving them ..."):
            result = run_review_bench(rows=rows, scroll_rows=scroll, folder=folder)
    except LensflowError as err:
        out.print(f"bench failed: {err}", markup=False)
        raise typer.Exit(1) from None
    for line in result.lines():
        out.print(line, markup=False)
    if json_out:
        json_out.write_text(json.dumps(asdict(result), indent=2) + "\n")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``review`` to the ``lensflow`` app and ``review`` to ``lensflow bench``.

    Args:
        app: The ``lensflow`` app.
        bench: The ``lensflow bench`` sub-app.

    """
    app.command("review")(review)
    bench.command("review")(bench_review)
