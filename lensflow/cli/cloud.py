"""``lensflow cloud ...``: run the cloud tier's processes."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from lensflow.cli.defaults import config_or_default, shipped_help
from lensflow.cli.pipeline import plugin_registry
from lensflow.shared.errors import ConfigError, LensflowError

app = typer.Typer(help="Cloud tier: workers and the HTTP API.", no_args_is_help=True)
err_console = Console(stderr=True)


@app.callback()
def cloud() -> None:
    """Cloud tier: workers and the HTTP API."""


@app.command("worker")
def worker(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help=shipped_help("Cloud config YAML", "cloud.yaml")),
    ] = None,
    plugins: Annotated[
        list[str] | None,
        typer.Option("--plugins", help="Extra module(s) whose classifier plugins to register."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(help="Address /metrics binds to; 0.0.0.0 for a scraper outside a container."),
    ] = "127.0.0.1",
) -> None:
    """Consume crops (MQTT or AMQP intake), run the pipeline DAG and store the results."""
    from lensflow.cli.logs import setup_logging
    from lensflow.cloud.worker import Worker
    from lensflow.shared.config import load_cloud_config

    try:
        cfg = load_cloud_config(config_or_default(config, "cloud.yaml"))
    except ConfigError as err:
        for issue in err.issues:
            err_console.print(str(issue), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    setup_logging(cfg.logging)
    logging.getLogger("pika").setLevel(logging.WARNING)  # its INFO is per-frame chatter
    try:
        registry = plugin_registry(plugins or [])
        cloud_worker = Worker(cfg, registry=registry)
    except ConfigError as err:
        for issue in err.issues:
            err_console.print(str(issue), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (LensflowError, OSError) as err:
        err_console.print(f"cloud worker cannot start: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if metrics_port is not None:
        cloud_worker.metrics.serve(metrics_port, host=metrics_host)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        cloud_worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cloud_worker.run()
