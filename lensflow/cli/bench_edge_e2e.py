"""``lensflow bench edge --end-to-end``: the table and verdicts of the end-to-end bench."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from lensflow.bench.edge_e2e import DEFAULT_CROP_MODE, CropMode, run_end_to_end

if TYPE_CHECKING:
    from lensflow.models.export.artifacts import Backend

out = Console()


def crop_modes(asked: list[str] | None) -> list[CropMode]:
    """The crop modes to run: the ones asked, else the product's default then the other."""
    modes: tuple[CropMode, ...] = ("best_per_track", "every_detection")
    if not asked:
        return [DEFAULT_CROP_MODE, *(m for m in modes if m != DEFAULT_CROP_MODE)]
    wrong = [m for m in asked if m not in modes]
    if wrong:
        raise typer.BadParameter(f"expected {' or '.join(modes)}, got {wrong}")
    return [m for m in modes if m in asked]


def end_to_end_bench(
    artifact: Path,
    *,
    backend: Backend,
    frames: int,
    cameras: list[int],
    crop_modes: list[CropMode],
    in_flight: list[int | None],
) -> None:
    """Run the end-to-end bench and print its table and one verdict line per run.

    CPU ms/frame is this process's CPU time (every thread; the private broker not included)
    per frame; engine CPU over agent CPU per frame is the limit ratio the agent would reach
    with every core busy: below it, cores sat idle; at it, the work beside inference is what
    holds the agent back.
    """
    with out.status("running an edge agent on a sample video against a private broker ..."):
        results = run_end_to_end(
            artifact,
            backend=backend,
            frames=frames,
            cameras=cameras,
            crop_modes=crop_modes,
            in_flight=in_flight,
        )
    first = results[0]
    table = Table(
        title=f"bench edge --end-to-end: {artifact.name} on {backend} ({frames}-frame video "
        "per camera, every camera through the agent's detector service)",
        title_justify="left",
    )
    columns = ("measure", "frames", "crops", "fps", "/ engine limit", "CPU ms/frame", "cores")
    for column in columns:
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row(
        "detector only (decoded frames, one call after another)",
        str(frames), "-", f"{first.detector_only_fps:.2f}",
        f"{first.detector_only_fps / first.engine_limit_fps:.2f}", "-", "-",
    )  # fmt: skip
    shown: set[int] = set()
    for result in results:
        if result.cameras not in shown:
            shown.add(result.cameras)
            table.add_row(
                f"detector service alone, {result.cameras} thread(s) (no decode, crops, MQTT)",
                str(result.cameras * frames), "-", f"{result.service_only_fps:.2f}",
                f"{result.service_ratio:.2f}", "-", "-",
            )  # fmt: skip
        table.add_row(
            "engine throughput limit (no pre/post), around the next run",
            "-", "-", f"{result.engine_limit_fps:.2f}", "1.00",
            f"{result.engine_cpu_ms_per_frame:.1f}", "-",
        )  # fmt: skip
        table.add_row(
            f"{result.cameras} camera(s), {result.crop_mode}, {result.in_flight} in flight "
            "each: source -> acknowledged crop, aggregate",
            str(result.frames), str(result.crops), f"{result.fps:.2f}",
            f"{result.limit_ratio:.2f}", f"{result.cpu_ms_per_frame:.1f}", f"{result.cores:.2f}",
        )  # fmt: skip
    out.print(table)
    for result in results:
        ok = "[green]ok[/green]" if result.limit_ratio >= 0.9 else "[red]below target[/red]"
        out.print(
            f"{result.cameras} camera(s), {result.crop_mode}, {result.in_flight} in flight: "
            f"aggregate / engine limit {result.limit_ratio:.2f} (target >= 0.90) {ok}; "
            f"end-to-end / detector-only {result.ratio:.2f}; engine CPU / agent CPU per frame "
            f"{result.cpu_ratio:.2f} (the ratio when CPU-bound), {result.cores:.2f} cores busy"
        )
