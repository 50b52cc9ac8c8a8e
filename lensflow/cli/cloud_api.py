"""``lensflow cloud api`` and ``lensflow cloud keys create``: serve the API, issue API keys."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lensflow.cli.defaults import config_or_default, shipped_help
from lensflow.shared.errors import ConfigError, LensflowError

if TYPE_CHECKING:
    from lensflow.shared.config.cloud import CloudConfig

out = Console()
err_console = Console(stderr=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=shipped_help("Cloud config YAML", "cloud.yaml")),
]
DEFAULT_CONFIG = None


class RoleChoice(StrEnum):
    """An API key's role."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


def _load(config: Path | None) -> CloudConfig:
    """Load the cloud config (the shipped one when None), or print its problems and exit 1."""
    from lensflow.shared.config import load_cloud_config

    try:
        return load_cloud_config(config_or_default(config, "cloud.yaml"))
    except ConfigError as err:
        for issue in err.issues:
            err_console.print(str(issue), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


def api(
    config: ConfigOption = DEFAULT_CONFIG,
    host: Annotated[str | None, typer.Option(help="Listen address (default: config).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: config).")] = None,
) -> None:
    """Serve the cloud HTTP API (results, crops, aggregates, relabelling) with uvicorn."""
    import uvicorn

    from lensflow.cli.logs import setup_logging
    from lensflow.cli.pipeline import plugin_registry
    from lensflow.cloud.api import create_app

    cfg = _load(config)
    setup_logging(cfg.logging)
    try:
        app = create_app(cfg, registry=plugin_registry([]))
    except (LensflowError, OSError) as err:
        err_console.print(f"cloud API cannot start: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    tls = cfg.api.tls
    uvicorn.run(
        app,
        host=host or cfg.api.host,
        port=port or cfg.api.port,
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
        ssl_ca_certs=tls.ca_file if tls else None,
        log_config=None,  # keep the logging set up above
        proxy_headers=False,
    )


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", "-n", help="Unique key name (the actor).")],
    role: Annotated[RoleChoice, typer.Option("--role", "-r", help="What the key may do.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Create an API key and print it: it is shown only this once (only its hash is kept)."""
    from lensflow.cloud.api import KeyStore
    from lensflow.cloud.storage import create_engine_for

    cfg = _load(config)
    engine = create_engine_for(cfg.database.url.get_secret_value())
    try:
        store = KeyStore(engine)
        store.ensure_table()
        issued = store.create(name=name, role=role.value)
    except LensflowError as err:
        err_console.print(f"cannot create the key: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    err_console.print(
        f"created {issued.role} key {issued.name!r}; store it now, it is not shown again:",
        markup=False,
    )
    out.print(issued.token, markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``api`` and ``keys create`` to the ``cloud`` sub-app.

    Args:
        app: The ``lensflow cloud`` Typer app.

    """
    app.command("api")(api)
    app.add_typer(keys_app, name="keys")
