"""``lensflow broker acl EDGE_CONFIG...``: the mosquitto ACL that gives each edge its own topics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lensflow.shared.errors import ConfigError, LensflowError

app = typer.Typer(
    help="The shipped mosquitto broker's security: one user per edge agent, an ACL.",
    no_args_is_help=True,
)
err_console = Console(stderr=True)


@app.command("acl")
def acl(
    configs: Annotated[
        list[Path], typer.Argument(help="Edge config YAML of every agent the broker serves.")
    ],
    cloud_user: Annotated[
        str, typer.Option(help="Broker user of the cloud (workers, control plane).")
    ] = "lensflow-cloud",
    agents_only: Annotated[
        bool, typer.Option(help="Only the agents' blocks, to append to an existing ACL file.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the broker ACL for these edge agents (mosquitto acl_file).

    Each agent logs in as its config's mqtt.username, else as AGENT_ID@SITE, and may write
    only its cameras' crops, its status and its config acks, and read only its config and
    its cameras' receipts. Two agents of one site with the same agent id, or each with a
    camera of the same name, are an error (both would be allowed the same topic).
    """
    from lensflow.services.mosquitto_auth import AgentGrant, render_acl
    from lensflow.shared.config import load_edge_config

    try:
        edges = [load_edge_config(path) for path in configs]
        grants = [AgentGrant.from_config(edge) for edge in edges]
        text = render_acl(grants, cloud_user=cloud_user, agents_only=agents_only)
    except ConfigError as err:
        for issue in err.issues:
            err_console.print(f"error: {issue}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except LensflowError as err:
        err_console.print(f"error: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
    for edge, grant in zip(edges, grants, strict=True):
        todo = "" if edge.mqtt.username else f"set mqtt.username: {grant.user} in its config, "
        err_console.print(
            f"agent {grant.agent_id} of site {grant.site} logs in as {grant.user}: {todo}"
            f"add the user with `mosquitto_passwd PASSWORD_FILE {grant.user}` and give the "
            "agent LENSFLOW_EDGE__MQTT__PASSWORD",
            markup=False,
            soft_wrap=True,
        )
