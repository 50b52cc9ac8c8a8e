"""The demo's summary, gathered from the edge's counters and the real API, printed with rich.

Per camera counts, classifier results by node, an image search, and how to open the review app.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from lensflow.demo.monitor import ApiClient, CameraCounts, Progress
from lensflow.demo.prepare import DemoError
from lensflow.demo.teach import TeachSummary

TOP_LABELS = 5
SEARCH_K = 3
PERSON_CLASSES = frozenset({"person", "Normal", "Fall"})


@dataclass
class NodeSummary:
    """One classifier node's outcomes over every stored crop."""

    node: str
    ok: int = 0
    skipped: int = 0
    error: int = 0
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class SearchHit:
    """One crop in the search example."""

    crop_id: str
    camera: str
    class_name: str
    label: str | None
    similarity: float | None = None


@dataclass
class Summary:
    """Everything the demo prints at the end (also written as JSON with ``--json``)."""

    complete: bool
    sent: int
    stored: int
    dead_letters: int
    cameras: dict[str, CameraCounts]
    classes: dict[str, int]
    nodes: list[NodeSummary]
    search_query: SearchHit | None
    search_results: list[SearchHit]
    search_error: str | None
    api_url: str
    api_key: str
    review_command: str
    logs: str
    message: str = ""
    teach: TeachSummary | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def node_summaries(results: list[dict[str, Any]]) -> list[NodeSummary]:
    """Per node: ok / skipped / error counts and the most frequent labels, in pipeline order."""
    nodes: dict[str, NodeSummary] = {}
    labels: dict[str, Counter[str]] = {}
    for item in results:
        for name, outcome in item["classifiers"].items():
            node = nodes.setdefault(name, NodeSummary(node=name))
            status = outcome["status"]
            setattr(node, status, getattr(node, status) + 1)
            if status == "ok" and outcome.get("label"):
                labels.setdefault(name, Counter())[outcome["label"]] += 1
    for name, counts in labels.items():
        nodes[name].labels = dict(counts.most_common(TOP_LABELS))
    return list(nodes.values())


def _hit(item: dict[str, Any], label_node: str | None) -> SearchHit:
    outcome = item["classifiers"].get(label_node or "", {})
    return SearchHit(
        crop_id=item["crop_id"],
        camera=item["camera"],
        class_name=item["detection"]["class_name"],
        label=outcome.get("label") if outcome.get("status") == "ok" else None,
        similarity=item.get("similarity"),
    )


def search_example(
    api: ApiClient, results: list[dict[str, Any]], *, label_node: str | None, wait_s: float = 15.0
) -> tuple[SearchHit | None, list[SearchHit], str | None]:
    """One crop (a person with a shirt colour when there is one) and its most similar crops.

    The API adds stored embeddings to its index every ``sync_interval_s``: a crop not indexed
    yet answers 409, so this retries for up to ``wait_s``.
    """
    if len(results) < 2:
        return None, [], "fewer than two crops were stored: nothing to compare"

    def rank(item: dict[str, Any]) -> int:
        person = item["detection"]["class_name"] in PERSON_CLASSES
        return 0 if person and _hit(item, label_node).label else 1

    query = sorted(results, key=rank)[0]
    deadline = time.monotonic() + wait_s
    while True:
        answer = api.http.get(f"/v1/search/similar/{query['crop_id']}", params={"k": SEARCH_K})
        if answer.status_code == 200:
            items = answer.json()["items"]
            return _hit(query, label_node), [_hit(i, label_node) for i in items], None
        if answer.status_code != 409 or time.monotonic() > deadline:
            return _hit(query, label_node), [], f"{answer.status_code}: {answer.text[:300]}"
        time.sleep(0.5)


def label_node_of(nodes: list[NodeSummary]) -> str | None:
    """The node whose labels describe a person best in the search example (shirt colour)."""
    for node in nodes:
        if "color" in node.node and node.ok:
            return node.node
    return next((node.node for node in nodes if node.labels), None)


def build_summary(
    progress: Progress, api: ApiClient, *, complete: bool, logs: str, message: str = ""
) -> Summary:
    """Gather the summary from the run's progress and the API.

    Raises:
        DemoError: The API cannot be read.

    """
    results = api.all_results()
    nodes = node_summaries(results)
    label_node = label_node_of(nodes)
    try:
        query, hits, error = search_example(api, results, label_node=label_node)
    except DemoError as err:
        query, hits, error = None, [], str(err)
    command = f"lensflow review --api {api.base_url} --key {api.key}"
    return Summary(
        complete=complete,
        sent=progress.sent,
        stored=progress.stored,
        dead_letters=progress.dead_letters,
        cameras=progress.cameras,
        classes=dict(Counter(item["detection"]["class_name"] for item in results).most_common()),
        nodes=nodes,
        search_query=query,
        search_results=hits,
        search_error=error,
        api_url=api.base_url,
        api_key=api.key,
        review_command=command,
        logs=logs,
        message=message,
    )


def render(summary: Summary, console: Console) -> None:
    """Print the summary."""
    console.rule("[bold]lensflow demo: summary")
    cameras = Table(title="Edge → cloud, per camera", title_justify="left")
    for column in ("camera", "frames", "detections", "crops sent", "crops stored"):
        cameras.add_column(column, justify="left" if column == "camera" else "right")
    for name, c in summary.cameras.items():
        cameras.add_row(
            name, *(str(v) for v in (c.frames, c.detections, c.crops_sent, c.crops_stored))
        )
    cameras.add_row(
        "[bold]all",
        str(sum(c.frames for c in summary.cameras.values())),
        str(sum(c.detections for c in summary.cameras.values())),
        str(summary.sent),
        str(summary.stored),
    )
    console.print(cameras)
    classes = ", ".join(f"{name} {count}" for name, count in summary.classes.items()) or "none"
    console.print(f"Stored crops by edge class: {classes}", soft_wrap=True)
    nodes = Table(title="Classifier results by node", title_justify="left")
    nodes.add_column("node", no_wrap=True)
    for column in ("ok", "skipped", "error"):
        nodes.add_column(column, justify="right")
    nodes.add_column("top labels")
    for node in summary.nodes:
        top = ", ".join(f"{label} {count}" for label, count in node.labels.items()) or "-"
        nodes.add_row(node.node, str(node.ok), str(node.skipped), str(node.error), top)
    console.print(nodes)
    _render_search(summary, console)
    status = "[green]complete" if summary.complete else "[red]INCOMPLETE"
    console.print(
        f"{status}[/]: {summary.stored} of {summary.sent} crops stored, "
        f"{summary.dead_letters} dead letters. {summary.message}".rstrip()
    )
    if summary.teach is not None:
        render_teach(summary.teach, console)
    console.print("Open the review app against this run (while it runs):")
    console.print(f"  {summary.review_command}", markup=False, soft_wrap=True)
    console.print(f"Logs and state: {summary.logs}", markup=False, soft_wrap=True)


def _render_search(summary: Summary, console: Console) -> None:
    query = summary.search_query
    if query is None or summary.search_error is not None:
        console.print(f"Image search: not available ({summary.search_error})")
        return
    table = Table(
        title=f"Image search: crops similar to {query.crop_id} "
        f"({query.camera}, {query.class_name}, {query.label or 'no label'})",
        title_justify="left",
    )
    for column in ("similarity", "crop", "camera", "class", "label"):
        table.add_column(column, justify="right" if column == "similarity" else "left")
    for hit in summary.search_results:
        similarity = "-" if hit.similarity is None else f"{hit.similarity:.3f}"
        table.add_row(similarity, hit.crop_id, hit.camera, hit.class_name, hit.label or "-")
    console.print(table)
    url = f"{summary.api_url}/v1/search/similar/{query.crop_id}?k={SEARCH_K}"
    console.print(f"  (GET {url})", markup=False, soft_wrap=True)


def render_teach(teach: TeachSummary, console: Console) -> None:
    """Print what ``--teach`` did, in one paragraph."""
    kinds = ", ".join(f"{k} {n}" for k, n in (teach.label_counts or {}).items())
    console.print(
        f"Taught node {teach.node!r}: {teach.labels} crops labelled through the API ({kinds}); "
        f"head {teach.head[:12]} held-out accuracy {teach.heldout_accuracy:.2f} "
        f"(gate: beat the {teach.gate}); replay: {teach.replay_changed} changes; "
        f"activated as version {teach.candidate_version}; "
        f"{teach.live_labelled} of {teach.live_sent} new crops labelled by the head",
        soft_wrap=True,
        markup=False,
    )
