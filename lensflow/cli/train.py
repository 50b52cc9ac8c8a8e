"""``lensflow train head`` and ``lensflow pipeline replay``: the loop back, from a terminal.

Both are clients of the cloud API (``POST /v1/heads``, ``POST /v1/pipelines/{id}/replay``),
so they train and replay where the data is, with the API's checks, and need an operator key
(``--key`` or ``LENSFLOW_API_KEY``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Train heads from reviewed labels (through the cloud API).")
out = Console()
err_console = Console(stderr=True)

ApiUrl = Annotated[str, typer.Option("--api", envvar="LENSFLOW_API", help="The cloud API's URL.")]
ApiKey = Annotated[
    str, typer.Option("--key", envvar="LENSFLOW_API_KEY", help="An operator API key.")
]
REPLAY_POLL_S = 0.5


def _call(method: str, url: str, key: str, *, timeout_s: float = 300.0, **kwargs: Any) -> Any:
    """The JSON answer of an API call; exits 1 with the API's message on an error."""
    try:
        answer = httpx.request(
            method, url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s, **kwargs
        )
    except httpx.HTTPError as err:
        err_console.print(f"cannot reach {url}: {err}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if answer.status_code >= 400:
        try:
            error = answer.json()["error"]
            text = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            text = answer.text[:500]
        err_console.print(
            f"{method} {url}: {answer.status_code} {text}", markup=False, soft_wrap=True
        )
        raise typer.Exit(1)
    return answer.json()


@app.command("head")
def head(
    node: Annotated[str, typer.Option(help="The node whose reviewed labels the head learns.")],
    api: ApiUrl = "http://127.0.0.1:8080",
    key: ApiKey = "",
    embedding: Annotated[str, typer.Option(help="The node whose vectors it reads.")] = "embedding",
    labels: Annotated[
        str | None, typer.Option(help="Only these labels, comma-separated (default: all).")
    ] = None,
    kind: Annotated[str, typer.Option(help="logistic or knn.")] = "logistic",
    min_per_class: Annotated[int, typer.Option(min=2, help="Fewest training labels a class.")] = 5,
    pipeline: Annotated[
        str | None, typer.Option(help="Pipeline name whose active version to extend.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the head as JSON.")] = None,
) -> None:
    """Train a head on a node's reviewed labels; print its card and the candidate version.

    The API gates it (it must beat the node's active head, its stored labels or the majority
    class on held-out crops) and stores a candidate pipeline version that runs it, not active:
    replay it (``lensflow pipeline replay``), then activate it.
    """
    body: dict[str, Any] = {
        "node": node,
        "embedding": embedding,
        "kind": kind,
        "min_per_class": min_per_class,
    }
    if labels:
        body["labels"] = [name.strip() for name in labels.split(",") if name.strip()]
    if pipeline:
        body["pipeline"] = pipeline
    trained = _call("POST", f"{api.rstrip('/')}/v1/heads", key, json=body)
    if json_out is not None:
        json_out.write_text(json.dumps(trained, indent=2) + "\n", encoding="utf-8")
    render_card(trained)
    candidate = trained["candidate"]
    out.print(
        f"candidate pipeline version {candidate['id']} ({candidate['sha256'][:12]}) stored, not "
        f"active. Next: lensflow pipeline replay {candidate['id']} --api {api}",
        markup=False,
        soft_wrap=True,
    )


def render_card(trained: dict[str, Any]) -> None:
    """Print a head's card: data, held-out figures per class, confusion matrix, gate."""
    card = trained["card"]
    held = card["heldout"]
    out.print(
        f"head {trained['sha256'][:12]} for node {trained['node']!r} ({card['kind']} on "
        f"{card['embedding_node']}): held-out accuracy {held['accuracy']:.3f}, macro-F1 "
        f"{held['macro_f1']:.3f} on {held['n']} crops; gate passed against the "
        f"{card['gate']['baseline']} ({card['gate']['reference']['accuracy']:.3f})",
        markup=False,
        soft_wrap=True,
    )
    per_class = Table(title="per class (held-out)", title_justify="left")
    for column in ("label", "train", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for label, figures in held["per_class"].items():
        per_class.add_row(
            label,
            str(card["train_counts"].get(label, 0)),
            f"{figures['precision']:.2f}",
            f"{figures['recall']:.2f}",
            f"{figures['f1']:.2f}",
            str(figures["support"]),
        )
    out.print(per_class)
    confusion = Table(title="confusion (rows: reviewed label, columns: head)", title_justify="left")
    names = held["confusion"]["labels"]
    confusion.add_column("")
    for name in names:
        confusion.add_column(name, justify="right")
    for name, row in zip(names, held["confusion"]["matrix"], strict=True):
        confusion.add_row(name, *(str(n) for n in row))
    out.print(confusion)


def replay(
    version: Annotated[int, typer.Argument(min=1, help="The candidate pipeline version id.")],
    api: ApiUrl = "http://127.0.0.1:8080",
    key: ApiKey = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most crops, newest first.")] = 500,
    camera: Annotated[str | None, typer.Option(help="Only this camera's crops.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
) -> None:
    """Replay a pipeline version over stored crops; print the comparison with what is stored.

    The API's replay process runs it; nothing is written as results.
    """
    params: dict[str, Any] = {"limit": limit}
    if camera:
        params["camera"] = camera
    base = api.rstrip("/")
    job = _call("POST", f"{base}/v1/pipelines/{version}/replay", key, params=params)
    with out.status(f"replay job {job['id']}: {job['total']} crops ..."):
        while job["state"] not in ("done", "failed"):
            time.sleep(REPLAY_POLL_S)
            job = _call("GET", f"{base}/v1/replays/{job['id']}", key)
    if job["state"] == "failed":
        err_console.print(f"replay job {job['id']} failed: {job['error']}", markup=False)
        raise typer.Exit(1)
    report = job["report"]
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = Table(
        title=f"replay of version {version} over {report['crops']} crops", title_justify="left"
    )
    for column in ("node", "compared", "changed", "newly run", "newly skipped", "errors"):
        table.add_column(column, justify="left" if column == "node" else "right")
    for name, node in report["nodes"].items():
        label = name if node["in_candidate"] else f"{name} (removed)"
        table.add_row(
            label,
            *(
                str(node[k])
                for k in ("compared", "changed", "newly_run", "newly_skipped", "errors")
            ),
        )
    out.print(table)
    out.print(
        f"activate with: POST {base}/v1/pipelines/{version}/activate (or the review app's "
        "pipeline tab)",
        markup=False,
        soft_wrap=True,
    )


def activate(
    version: Annotated[int, typer.Argument(min=1, help="The pipeline version id.")],
    api: ApiUrl = "http://127.0.0.1:8080",
    key: ApiKey = "",
) -> None:
    """Make a pipeline version the active one of its name: running workers swap to it."""
    row = _call("POST", f"{api.rstrip('/')}/v1/pipelines/{version}/activate", key)
    out.print(
        f"pipeline {row['name']} version {row['id']} ({row['sha256'][:12]}) is active; "
        f"GET {api.rstrip('/')}/v1/workers shows the workers that run it",
        markup=False,
        soft_wrap=True,
    )


def register(root: typer.Typer, pipeline: typer.Typer) -> None:
    """Add ``train head``, ``pipeline replay`` and ``pipeline activate``.

    Args:
        root: The ``lensflow`` app.
        pipeline: Its ``pipeline`` sub-app.

    """
    root.add_typer(app, name="train")
    pipeline.command("replay")(replay)
    pipeline.command("activate")(activate)
