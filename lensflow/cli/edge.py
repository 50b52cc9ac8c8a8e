"""``lensflow edge --config FILE``: run an edge agent."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lensflow.cli.defaults import config_or_default, manifest_or_default, shipped_help
from lensflow.shared.errors import ConfigError, LensflowError

err_console = Console(stderr=True)


def edge(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help=shipped_help("Edge config YAML", "edge.yaml")),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            help="Exit when every source is exhausted or dead (failing, with no frame, for "
            "longer than its source's open_timeout_s)."
        ),
    ] = False,
    manifest: Annotated[
        Path | None, typer.Option(help=shipped_help("Model manifest", "models.yaml"))
    ] = None,
) -> None:
    """Run the edge agent: detect, filter, track, and publish best crops over MQTT."""
    from lensflow.cli.logs import setup_logging
    from lensflow.edge.agent import EdgeAgent, default_loader
    from lensflow.models.export.artifacts import artifact_for
    from lensflow.shared.config import load_edge_config

    try:
        cfg = load_edge_config(config_or_default(config, "edge.yaml"))
    except ConfigError as err:
        for issue in err.issues:
            err_console.print(str(issue), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    setup_logging(cfg.logging)

    def load(detector: Any, *, parallel: int = 1) -> Any:
        path = artifact_for(
            detector.model,
            backend=detector.backend,
            precision=detector.precision,
            manifest=manifest_or_default(manifest),
            log=logging.getLogger("lensflow.edge").info,
        )
        return default_loader(detector.model_copy(update={"model": str(path)}), parallel=parallel)

    try:
        agent = EdgeAgent(cfg, load=load)
    except LensflowError as err:
        err_console.print(f"edge agent cannot start: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if cfg.metrics_port is not None:
        agent.metrics.serve(cfg.metrics_port, host=cfg.metrics_host)
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    try:
        agent.run(until_sources_end=once)
    except KeyboardInterrupt:
        agent.stop()
