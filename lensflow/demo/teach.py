"""``lensflow demo --teach``: the loop back, end to end, through the real API.

After the normal run, a scripted operator teaches the pipeline a node it does not have,
``object_kind`` (person, vehicle or animal):

1. starts the node's label schema and labels the stored crops through ``POST /v1/labels``,
   as the review app's bulk relabel does. The scripted labels stand for an operator sorting
   crops by kind; they are derived from the edge detector's class, so they are as right as
   the detector (a real operator would correct the few it got wrong);
2. trains a head on the ``embedding`` node's vectors (``POST /v1/heads``), which the gate
   must pass against the majority class on the held-out crops;
3. replays the candidate version over the stored crops and reads the report;
4. activates it, and waits until the running worker has swapped to it (``GET /v1/workers``);
5. sends new crops (a second edge agent over the same photos, camera ``photos-taught``) and
   counts those that come back labelled by the head.

The held-out accuracy is optimistic: the demo's crops include near-duplicates (the video pans
over the same scenes, and its frames and the photos overlap), which the crop-id split spreads
over train and held-out. The gate's significance test is what keeps a head that learned
nothing out.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from lensflow.demo.monitor import ApiClient, EdgeLog
from lensflow.demo.prepare import DemoError

NODE = "object_kind"
CAMERA = "photos-taught"
VEHICLES = ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat")
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
KIND = {"person": "person", "Normal": "person", "Fall": "person"}
KIND |= dict.fromkeys(VEHICLES, "vehicle") | dict.fromkeys(ANIMALS, "animal")
WAIT_S = 180.0
POLL_S = 0.5


@dataclass
class TeachSummary:
    """What ``--teach`` did (the summary's ``teach`` object)."""

    labels: int
    heldout_accuracy: float
    replay_changed: int
    live_labelled: int
    live_sent: int = 0
    node: str = NODE
    head: str = ""
    candidate_version: int = 0
    gate: str = ""
    label_counts: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def label_stored_crops(api: ApiClient, results: list[dict[str, Any]]) -> Counter[str]:
    """The scripted operator: start the node's schema, label every crop of a known kind."""
    by_kind: dict[str, list[str]] = {}
    for item in results:
        kind = KIND.get(item["detection"]["class_name"])
        if kind is not None:
            by_kind.setdefault(kind, []).append(item["crop_id"])
    schema = api.get(f"/v1/label-schemas/{NODE}") if _has_schema(api) else {"labels": []}
    present = {label["name"] for label in schema["labels"]}
    for kind in ("person", "vehicle", "animal"):
        if kind in by_kind and kind not in present:
            api.post(f"/v1/label-schemas/{NODE}/labels", {"name": kind})
    for kind, crop_ids in by_kind.items():
        for first in range(0, len(crop_ids), 500):
            body = {"crop_ids": crop_ids[first : first + 500], "node": NODE, "label": kind}
            api.post("/v1/labels", body)
    return Counter({kind: len(ids) for kind, ids in by_kind.items()})


def _has_schema(api: ApiClient) -> bool:
    try:
        api.get(f"/v1/label-schemas/{NODE}")
    except DemoError:
        return False
    return True


def replay(api: ApiClient, version_id: int) -> dict[str, Any]:
    """Replay the candidate over the stored crops; its report once done."""
    job = api.post(f"/v1/pipelines/{version_id}/replay", limit=1000)
    deadline = time.monotonic() + WAIT_S
    while job["state"] not in ("done", "failed"):
        if time.monotonic() > deadline:
            raise DemoError(f"replay job {job['id']} did not finish in {WAIT_S:.0f} s")
        time.sleep(POLL_S)
        job = api.get(f"/v1/replays/{job['id']}")
    if job["state"] == "failed":
        raise DemoError(f"replay job {job['id']} failed: {job['error']}")
    return dict(job["report"])


def wait_for_swap(api: ApiClient, sha256: str) -> None:
    """Until a running worker reports the version (it swaps between batches)."""
    deadline = time.monotonic() + WAIT_S
    while not any(w["sha256"] == sha256 for w in api.get("/v1/workers", alive="true")):
        if time.monotonic() > deadline:
            workers = api.get("/v1/workers")
            errors = "; ".join(w["last_error"] for w in workers if w["last_error"]) or "none"
            raise DemoError(f"no worker runs version {sha256[:12]} after {WAIT_S:.0f} s: {errors}")
        time.sleep(POLL_S)


def teach_edge_config(run_edge: Path, *, metrics_port: int, folder: Path) -> Path:
    """A second edge config: the photos camera only, renamed, with its own spool and port."""
    config = yaml.safe_load(run_edge.read_text(encoding="utf-8"))
    photos = [camera for camera in config["cameras"] if camera["name"] == "photos"]
    config["cameras"] = [{**camera, "name": CAMERA} for camera in photos]
    config["agent_id"] = f"{config.get('agent_id', 'demo-edge')}-taught"
    config["metrics_port"] = metrics_port
    config["spool"] = {**config.get("spool", {}), "path": str(folder / "edge-taught.sqlite3")}
    path = folder / "edge-taught.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def live_results(
    api: ApiClient, edge_log: EdgeLog, *, alive: Callable[[], None]
) -> list[dict[str, Any]]:
    """The taught camera's stored crops, once its edge has stopped and they stopped coming."""
    deadline = time.monotonic() + WAIT_S
    last, steady = -1, 0
    while True:
        alive()
        edge_log.poll()
        page = api.get("/v1/results", camera=CAMERA, limit=500)
        items: list[dict[str, Any]] = page["items"]
        steady = steady + 1 if len(items) == last else 0
        last = len(items)
        if CAMERA in edge_log.stopped and items and steady >= 6:
            return items
        if time.monotonic() > deadline:
            raise DemoError(f"the taught camera's crops did not all arrive in {WAIT_S:.0f} s")
        time.sleep(POLL_S)


def summarise(
    labels: Counter[str], head: dict[str, Any], report: dict[str, Any], live: list[dict[str, Any]]
) -> TeachSummary:
    """The ``teach`` object of the summary."""
    changed = sum(
        n["changed"] + n["newly_run"] + n["newly_skipped"] for n in report["nodes"].values()
    )
    labelled = [item for item in live if item["classifiers"].get(NODE, {}).get("status") == "ok"]
    return TeachSummary(
        labels=sum(labels.values()),
        heldout_accuracy=float(head["card"]["heldout"]["accuracy"]),
        replay_changed=changed,
        live_labelled=len(labelled),
        live_sent=len(live),
        head=head["sha256"],
        candidate_version=int(head["candidate"]["id"]),
        gate=head["card"]["gate"]["baseline"],
        label_counts=dict(labels),
    )
