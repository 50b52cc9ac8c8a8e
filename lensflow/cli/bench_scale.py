"""``lensflow bench scale``: crops/s of 1 and 2 worker processes on the quorum queue, and a kill.

Add it to the bench app with ``register(app)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lensflow.cli.choices import IngestDatabaseChoice
from lensflow.cli.defaults import manifest_or_default, shipped_help
from lensflow.shared.errors import LensflowError

if TYPE_CHECKING:
    from lensflow.bench.scale import ScaleBench

out = Console()


def scale(
    crops: Annotated[int, typer.Option(min=20, help="Crop messages drained per phase.")] = 1500,
    kill: Annotated[
        bool, typer.Option("--kill/--no-kill", help="Third phase: SIGKILL 1 of 2 workers mid-run.")
    ] = True,
    database: Annotated[
        IngestDatabaseChoice, typer.Option(help="Results database (a fresh one per phase).")
    ] = IngestDatabaseChoice.SQLITE,
    classifier: Annotated[
        str, typer.Option(help="Classifier: manifest name (timm-state-dict) or .onnx path.")
    ] = "efficientnet-lite0",
    batch: Annotated[int, typer.Option(min=1, help="The classifier node's batch size.")] = 8,
    prefetch: Annotated[
        int, typer.Option(min=1, help="AMQP prefetch per worker (in-flight window >= batch).")
    ] = 16,
    pin: Annotated[
        bool, typer.Option("--pin", help="Pin worker n to CPU n-1 (one core per worker).")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help=shipped_help("Model manifest", "models.yaml"))
    ] = None,
) -> None:
    """Throughput of 1 vs 2 `lensflow cloud worker` processes; every crop stored exactly once."""
    from lensflow.bench.scale import run_scale_bench
    from lensflow.models.export.artifacts import classifier_artifact_for

    try:
        model = classifier_artifact_for(
            classifier, manifest=manifest_or_default(manifest), log=out.print
        )
        result = run_scale_bench(
            crops=crops,
            classifier=model,
            database=database.value,
            kill=kill,
            batch=batch,
            prefetch=prefetch,
            pin=pin,
            progress=lambda line: out.print(line, markup=False, style="dim"),
        )
    except (LensflowError, ValueError) as err:
        out.print(f"bench failed: {err}", markup=False)
        raise typer.Exit(1) from None
    print_scale(result, classifier=classifier)
    if json_out:
        json_out.write_text(json.dumps(result.as_json(), indent=2) + "\n")
    if not result.ok:
        raise typer.Exit(1)


def print_scale(result: ScaleBench, *, classifier: str) -> None:
    """Throughput per phase and the ratio, then what the database holds after each phase."""
    from lensflow.bench.scale import TARGET

    speed = Table(
        title=f"bench scale: {result.crops} crops a phase, {classifier} (1 thread a worker), "
        f"batch {result.batch}, prefetch {result.prefetch}, {result.database}"
        + (", worker n pinned to CPU n-1" if result.pinned else ""),
        title_justify="left",
    )
    for column in (
        "phase",
        "crops/s",
        "window",
        "drain s",
        "stored by",
        "cores w/b/o/io",
        "crops/CPU-s",
        "load",
    ):
        speed.add_column(column, justify="left" if column in ("phase", "stored by") else "right")
    for phase in result.phases:
        killed = f" ({phase.killed}, at {phase.stored_at_kill} stored)" if phase.killed else ""
        speed.add_row(
            phase.name + killed,
            f"{phase.per_s:.1f}" if phase.window_s else "-",
            f"{phase.window_crops} in {phase.window_s:.1f} s" if phase.window_s else "-",
            f"{phase.drain_s:.1f}",
            " ".join(f"{name} {count}" for name, count in phase.by_worker.items()),
            "/".join(
                f"{phase.cpu_cores[part]:.2f}" for part in ("workers", "broker", "others", "iowait")
            )
            if phase.cpu_cores
            else "-",
            f"{phase.crops_per_cpu_s:.1f}" if phase.crops_per_cpu_s else "-",
            f"{phase.load_avg:.2f}",
        )
    out.print(speed)
    ratio = result.ratio
    verdict = "[green]ok[/green]" if ratio >= TARGET else "[red]below target[/red]"
    out.print(f"2 workers / 1 worker: {ratio:.2f} (target >= {TARGET:.2f}) {verdict}")
    out.print(
        "crops/s: crops committed while every worker consumed (last consumer up -> first "
        "worker out of crops); drain: first consumer up -> last commit; cores w/b/o/io: mean "
        "cores busy with the workers / the broker / other processes, and idle waiting for I/O "
        f"(of {os.cpu_count()}), from every consumer up to every crop stored; crops/CPU-s: "
        "crops stored over the workers' CPU seconds in that span; load: 1-min load average "
        f"at the start; messages of {result.message_bytes:,} B",
        markup=False,
    )
    checks = Table(title="every crop exactly once?", title_justify="left")
    columns = ("phase", "published", "rows", "distinct", "ok results", "lost", "redelivered")
    for column in (*columns, "dup seen", "dead", "queue left"):
        checks.add_column(column, justify="left" if column == "phase" else "right")
    for phase in result.phases:
        checks.add_row(
            phase.name,
            str(phase.published),
            str(phase.stored_rows),
            str(phase.distinct_crop_ids),
            str(phase.result_rows - phase.results_not_ok),
            _flag(phase.missing),
            str(phase.redelivered),
            str(phase.duplicates_seen),
            _flag(phase.dead_letters),
            _flag(phase.left_in_queue),
        )
    out.print(checks)
    if result.ok:
        out.print("[green]every phase: each published crop stored once, one result each[/green]")
    for phase in result.phases:
        for problem in phase.problems():
            out.print(f"[red]{phase.name}: {problem}[/red]")
    retries = {phase.name: phase.storage_retries for phase in result.phases}
    out.print(f"storage failures the workers retried: {retries}", markup=False)
    for note in result.notes:
        out.print(f"note: {note}", markup=False)


def _flag(count: int) -> str:
    return f"[red]{count}[/red]" if count else "0"


def register(app: typer.Typer) -> None:
    """Add ``scale`` to the ``lensflow bench`` app."""
    app.command("scale")(scale)
