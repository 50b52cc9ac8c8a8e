"""``lensflow edge --config FILE``: run an edge agent."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lensflow.shared.errors import ConfigError, LensflowError

err_console = Console(stderr=True)


def edge(
    config: Annotated[Path, typer.Option("--config", "-c", help="Edge config YAML.")] = Path(
        "configs/edge.yaml"
    ),
    once: Annotated[bool, typer.Option(help="Exit when every source is exhausted.")] = False,
    manifest: Annotated[Path, typer.Option(help="Model manifest.")] = Path("configs/models.yaml"),
) -> None:
    """Run the edge agent: detect, filter, track, and publish best crops over MQTT."""
    from lensflow.artifacts import artifact_for
    from lensflow.edge.agent import EdgeAgent, default_loader
    from lensflow.logs import setup_logging
    from lensflow.shared.config import load_edge_config

    try:
        cfg = load_edge_config(config)
    except ConfigError as err:
        for issue in err.issues:
            err_console.print(str(issue), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    setup_logging(cfg.logging)

    def load(detector: Any) -> Any:
        path = artifact_for(
            detector.model,
            backend=detector.backend,
            precision=detector.precision,
            manifest=manifest,
            log=logging.getLogger("lensflow.edge").info,
        )
        return default_loader(detector.model_copy(update={"model": str(path)}))

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
