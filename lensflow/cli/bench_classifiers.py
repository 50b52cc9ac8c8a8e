"""``lensflow bench classifiers``: crops/s of each classifier plugin at batch 1 and batch 8.

Add it to the bench app with ``register(app)``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.shared.errors import LensflowError

if TYPE_CHECKING:
    from lensflow.bench.classifiers import ClassifierBench

out = Console()


class PluginChoice(StrEnum):
    """``--plugin``: a plugin of :data:`lensflow.bench.classifiers.PLUGINS`."""

    VEHICLE_TYPE = "vehicle_type"
    EMBEDDINGS = "embeddings"
    TSHIRT_COLOR = "tshirt_color"
    CAR_MAKE_VIT = "car_make_vit"


class ViTChoice(StrEnum):
    """``--vit``: the shape of the random ViT standing in for a car-make checkpoint."""

    TEST = "test"
    TINY = "tiny"
    BASE = "base"


def classifiers(
    plugin: Annotated[
        list[PluginChoice] | None,
        typer.Option("--plugin", help="Plugins to time (repeat); default: all four."),
    ] = None,
    crops: Annotated[int, typer.Option(min=8, help="Distinct real crops per pass.")] = 64,
    rounds: Annotated[
        int, typer.Option(min=1, help="Timed passes per batch size (the best counts).")
    ] = 3,
    vit: Annotated[
        ViTChoice, typer.Option(help="car_make_vit stand-in: test (32 px), tiny (DeiT-Ti), base.")
    ] = ViTChoice.TINY,
    threads: Annotated[
        int | None, typer.Option(min=1, help="ONNX Runtime intra-op threads (default: its own).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
) -> None:
    """Crops per second of each classifier plugin at batch 1 and 8, and the ratio b8/b1."""
    from lensflow.bench.classifiers import PLUGINS, run_classifier_bench

    names = [choice.value for choice in plugin] if plugin else list(PLUGINS)
    try:
        result = run_classifier_bench(
            plugins=names,
            crops=crops,
            rounds=rounds,
            vit=vit.value,
            threads=threads,
            progress=lambda line: out.print(line, markup=False, style="dim"),
        )
    except LensflowError as err:
        out.print(f"bench failed: {err}", markup=False)
        raise typer.Exit(1) from None
    print_classifiers(result)
    if json_out:
        json_out.write_text(json.dumps(result.as_json(), indent=2) + "\n")
    if not result.results:
        raise typer.Exit(1)


def print_classifiers(result: ClassifierBench) -> None:
    """The table of crops/s per batch size and the ratio, then the skipped plugins."""
    small, big = min(result.batch_sizes), max(result.batch_sizes)
    table = Table(
        title=f"bench classifiers: {result.crops} real crops, best of {result.rounds} passes",
        title_justify="left",
    )
    table.add_column("plugin")
    for size in result.batch_sizes:
        table.add_column(f"crops/s b{size}", justify="right")
    table.add_column(f"b{big}/b{small}", justify="right")
    table.add_column("model", overflow="fold")
    for speed in result.results:
        rates = [f"{speed.rates[size]:.1f}" for size in result.batch_sizes]
        table.add_row(speed.plugin, *rates, f"{speed.ratio(big, small):.2f}", speed.model)
    out.print(table)
    for name, reason in result.skipped.items():
        out.print(f"skipped {name}: {reason}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``classifiers`` to the ``bench`` sub-app."""
    app.command("classifiers")(classifiers)
