"""``lensflow demo``: run the whole system on sample inputs and summarise what it found."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lensflow.cli.defaults import config_or_default, shipped_help
from lensflow.demo.prepare import DEFAULT_DETECTOR
from lensflow.shared.errors import LensflowError

out = Console()
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
TERMINATED = 143  # ... and by SIGTERM


def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Exit when everything sent has been processed.")
    ] = False,
    workdir: Annotated[
        Path, typer.Option(help="Folder of the run's state (wiped per run) and inputs.")
    ] = Path("var/demo"),
    max_images: Annotated[
        int, typer.Option(min=1, max=500, help="Photos for the `photos` camera.")
    ] = 8,
    frames: Annotated[int, typer.Option(min=2, max=3000, help="Frames of the `video` clip.")] = 60,
    detector: Annotated[
        str,
        typer.Option(help="Edge detector: a manifest name (yolo11n for COCO) or an artifact."),
    ] = DEFAULT_DETECTOR,
    pipeline: Annotated[
        Path | None,
        typer.Option(help=shipped_help("Pipeline the worker runs", "demo/pipeline.yaml")),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=5, help="Seconds to wait for every crop to be stored.")
    ] = 300.0,
    api_port: Annotated[int, typer.Option(min=0, max=65535, help="API port; 0: a free one.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary as JSON.")
    ] = None,
    teach: Annotated[
        bool,
        typer.Option(
            "--teach",
            help="Then teach a new node through the API: label, train a head, replay, "
            "activate, send new crops.",
        ),
    ] = False,
) -> None:
    """Run broker, cloud worker, API and an edge agent on sample photos and a video.

    Prints per camera counts, classifier results, an image search and how to review them.
    """
    from lensflow.cli.logs import setup_file_logging
    from lensflow.demo import DemoOptions, run_demo
    from lensflow.demo.run import Terminated

    # the summary is the demo's terminal output; library chatter (exports) goes to the file
    setup_file_logging(workdir.resolve() / "logs" / "demo.log")
    options = DemoOptions(
        workdir=workdir,
        once=once,
        max_images=max_images,
        frames=frames,
        detector=detector,
        pipeline=config_or_default(pipeline, "demo/pipeline.yaml"),
        timeout_s=timeout,
        api_port=api_port,
        json_out=json_out,
        teach=teach,
    )
    try:
        summary = run_demo(options, out)
    except KeyboardInterrupt as stop:
        for sig in (signal.SIGINT, signal.SIGTERM):  # stopped already: a second Ctrl+C while
            signal.signal(sig, signal.SIG_IGN)  # exiting must not turn 130 into death by signal
        out.print("demo interrupted; everything it started has been stopped")
        raise typer.Exit(TERMINATED if isinstance(stop, Terminated) else INTERRUPTED) from None
    except LensflowError as err:
        out.print(f"demo failed: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if not summary.complete:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``lensflow`` app.

    Args:
        app: The ``lensflow`` app.

    """
    app.command("demo")(demo)
