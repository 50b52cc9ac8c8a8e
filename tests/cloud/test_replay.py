"""Specs of replay before activate: a candidate over stored crops, in a child process.

Crops are stored by the worker's own processing path with version 1 of the test DAG; the
candidate changes one node's labels (the car makes in another order), runs the shirt colour
on every crop (newly run on cars) and drops a node (newly skipped). The report the API gives
must equal a recomputation written here independently: the candidate compiled in the test,
run on the same crops, compared node by node with what is stored. Nothing it computes is
written as results.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from lensflow.cloud.processing import CropProcessor, decode_crop_image
from lensflow.cloud.storage import ResultStore
from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models import ClassifierResult, Crop, PipelineVersion
from lensflow.cloud.storage.models_loop import ReplayJob
from lensflow.cloud.storage.rows import result_row
from lensflow.cloud.worker.versions import PipelineText, compile_text
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.images import decode_image
from lensflow.shared.protocol import decode_crop
from tests.support.api import ApiHarness, running_api
from tests.support.plugins import make_registry
from tests.support.worker import SlowCarMake, sample_crops

CROPS = 40
LIMIT = 30

V1: dict[str, Any] = {
    "version": 1,
    "name": "replay-test",
    "pipeline": [
        {"name": "object_detection", "class": "edge_detection"},
        {
            "name": "shirt",
            "class": "tshirt_color",
            "depends_on": "object_detection",
            "when": {"contains": ["object_detection.detected_classes", "person"]},
        },
        {
            "name": "make",
            "class": "car_make_vit",
            "depends_on": "object_detection",
            "when": {"contains": ["object_detection.detected_classes", "car"]},
        },
        {"name": "echo", "class": "echo"},
    ],
}


def candidate() -> dict[str, Any]:
    """Makes in another order (labels change), shirts on every crop, no echo node."""
    nodes = [dict(node) for node in V1["pipeline"] if node["name"] != "echo"]
    nodes[1].pop("when")
    nodes[2]["params"] = {"makes": ["toyota", "ford", "bmw", "audi"]}
    return {**V1, "pipeline": nodes}


def seed_crops(api: ApiHarness, registry: PluginRegistry, tmp_path: Path) -> None:
    """Store CROPS crops through the worker's processing path with version 1."""
    path = tmp_path / "v1.yaml"
    path.write_text(yaml.safe_dump(V1, sort_keys=False), encoding="utf-8")
    processor = CropProcessor.load(
        path, registry=registry, results=ResultStore(api.engine), crops=api.crops
    )
    decoded = []
    for sample in sample_crops(CROPS, prefix="replay"):
        message = decode_crop(sample.message)
        decoded.append(decode_crop_image(message.header, message.jpeg))
    results = processor.run(decoded)
    now = datetime.now(UTC)
    processor.store_many([(c, r, now) for c, r in zip(decoded, results, strict=True) if r])


def store_version(api: ApiHarness, document: dict[str, Any]) -> int:
    text = yaml.safe_dump(document, sort_keys=False)
    with session_factory(api.engine)() as session:
        row = PipelineVersion(
            name=document["name"],
            yaml_text=text,
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            created_by="test",
            active=False,
        )
        session.add(row)
        session.commit()
        return row.id


def finished(api: ApiHarness, job_id: int, timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(f"/v1/replays/{job_id}", who="viewer").json()
        if job["state"] in ("done", "failed"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"replay job {job_id} did not finish in {timeout_s} s")


def recomputed(api: ApiHarness, registry: PluginRegistry, version_id: int) -> dict[str, Any]:
    """The per-node figures, computed here without the replay package's comparison."""
    with session_factory(api.engine)() as session:
        version = session.get(PipelineVersion, version_id)
        assert version is not None
        text = version.yaml_text
        crops = session.scalars(
            select(Crop).order_by(Crop.captured_at.desc(), Crop.id.desc()).limit(LIMIT)
        ).all()
        stored = {
            crop.crop_id: {r.node: (r.status, r.label) for r in crop.results} for crop in crops
        }
        inputs = [
            {
                "detection": {
                    "class_name": c.class_name,
                    "class_id": c.class_id,
                    "score": c.score,
                    "box": (c.box_x1, c.box_y1, c.box_x2, c.box_y2),
                    "frame_width": c.frame_width,
                    "frame_height": c.frame_height,
                },
                "site": c.site,
                "camera": c.camera,
                "crop_id": c.crop_id,
                "track_id": c.track_id,
                "attributes": c.attributes,
            }
            for c in crops
        ]
        images = [decode_image(api.crops.get(c.jpeg_sha256), what="crop") for c in crops]
        ids = [c.crop_id for c in crops]
    pipeline = compile_text(
        PipelineText("replay-test", text, "x", version_id, "v"), registry=registry
    )
    fresh = pipeline.run_batch(images, inputs=inputs)
    figures: dict[str, dict[str, Any]] = {}
    for crop_id, result in zip(ids, fresh, strict=True):
        new = {n: (r.status, result_row(0, r)["label"]) for n, r in result.nodes.items()}
        old = stored[crop_id]
        for node in set(new) | set(old):
            f = figures.setdefault(node, Counter())
            o, n = old.get(node, ("absent", None)), new.get(node, ("absent", None))
            f["compared"] += 1
            if o[0] == "ok" and n[0] == "ok":
                f["changed" if o[1] != n[1] else "unchanged"] += 1
            elif n[0] == "ok":
                f["newly_run"] += 1
            elif o[0] == "ok":
                f["newly_skipped"] += 1
            if n[0] == "error":
                f["errors"] += 1
    return {node: dict(counts) for node, counts in figures.items()}


def result_count(api: ApiHarness) -> int:
    with session_factory(api.engine)() as session:
        return int(session.scalar(select(func.count()).select_from(ClassifierResult)) or 0)


@pytest.mark.integration
def test_a_replay_report_matches_a_direct_recomputation_and_writes_no_results(
    tmp_path: Path,
) -> None:
    registry = make_registry()
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with running_api(db_url, tmp_path, registry=registry) as api:
        seed_crops(api, registry, tmp_path)
        before = result_count(api)
        version_id = store_version(api, candidate())

        answer = api.post(f"/v1/pipelines/{version_id}/replay?limit={LIMIT}", who="operator")
        assert answer.status_code == 202, answer.text
        assert answer.headers["Location"] == f"/v1/replays/{answer.json()['id']}"
        job = finished(api, answer.json()["id"])

        assert job["state"] == "done", job["error"]
        report = job["report"]
        assert report["crops"] == LIMIT == job["total"] == job["done"]
        expected = recomputed(api, registry, version_id)
        for node, counts in expected.items():
            got = report["nodes"][node]
            for key in ("compared", "changed", "unchanged", "newly_run", "newly_skipped", "errors"):
                assert got[key] == counts.get(key, 0), (node, key, got, counts)
        assert report["nodes"]["make"]["changed"] > 0, "the makes' order changed labels"
        assert report["nodes"]["shirt"]["newly_run"] > 0, "shirts now run on cars"
        assert report["nodes"]["echo"]["newly_skipped"] == LIMIT
        assert report["nodes"]["echo"]["in_candidate"] is False
        pairs = {(row["old"], row["new"]) for row in report["nodes"]["shirt"]["confusion"]}
        assert any(old == "(not run)" and new != "(not run)" for old, new in pairs)
        assert len(report["nodes"]["make"]["examples"]["changed"]) <= 10
        assert list(report["compared_with"].values()) == [LIMIT]
        assert result_count(api) == before, "a replay writes no results"


def test_a_replay_needs_a_version_and_crops(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with running_api(db_url, tmp_path) as api:
        missing = api.post("/v1/pipelines/999/replay", who="operator")
        version_id = store_version(api, candidate())
        empty = api.post(f"/v1/pipelines/{version_id}/replay", who="operator")
        viewer = api.post(f"/v1/pipelines/{version_id}/replay", who="viewer")
        unknown = api.get("/v1/replays/12345", who="viewer")

    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_pipeline"
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "no_crops"
    assert viewer.status_code == 403
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_replay"


@pytest.mark.integration
def test_a_candidate_that_does_not_load_fails_the_job_saying_why_without_paths(
    tmp_path: Path,
) -> None:
    registry = make_registry()
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with running_api(db_url, tmp_path, registry=registry) as api:
        seed_crops(api, registry, tmp_path)
        broken = candidate()
        broken["pipeline"].append(
            {"name": "vit", "class": "lensflow.shared.classifiers.car_make_vit.CarMakeViT",
             "params": {"model": str(tmp_path / "no" / "such" / "checkpoint")}}
        )  # fmt: skip
        version_id = store_version(api, broken)

        job = finished(
            api, api.post(f"/v1/pipelines/{version_id}/replay", who="operator").json()["id"]
        )

    assert job["state"] == "failed"
    assert "checkpoint" in job["error"] and str(tmp_path) not in job["error"]
    assert job["report"] is None


@pytest.mark.integration
def test_a_replay_process_killed_midway_fails_its_job_and_the_next_one_runs(
    tmp_path: Path,
) -> None:
    registry = make_registry()
    registry.register(SlowCarMake, replace=True)
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with running_api(db_url, tmp_path, registry=registry) as api:
        seed_crops(api, registry, tmp_path)
        slow = candidate()
        slow["pipeline"].append(
            {"name": "slow", "class": "slow_car_make", "params": {"delay_ms": 150}}
        )
        slow_id, quick_id = store_version(api, slow), store_version(api, candidate())
        job_id = api.post(f"/v1/pipelines/{slow_id}/replay", who="operator").json()["id"]
        next_id = api.post(f"/v1/pipelines/{quick_id}/replay", who="operator").json()["id"]

        def running() -> dict[str, Any]:
            return dict(api.get(f"/v1/replays/{job_id}", who="viewer").json())

        deadline = time.monotonic() + 60
        while running()["done"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # a first batch done: the child is midway
        with session_factory(api.engine)() as session:
            job = session.get(ReplayJob, job_id)
            assert job is not None and job.state == "running"
            pid = int(job.runner.rpartition(":")[2])
        os.kill(pid, signal.SIGKILL)

        killed = finished(api, job_id)
        following = finished(api, next_id)

    assert killed["state"] == "failed" and "exit code -9" in killed["error"]
    assert 0 < killed["done"] < killed["total"]
    assert following["state"] == "done", following["error"]
