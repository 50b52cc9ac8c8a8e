"""Specs of versions going live: what the API activates is what running workers use next.

Two ``lensflow cloud worker`` processes share one intake (an MQTT shared subscription on a
private mosquitto with SQLite; a RabbitMQ quorum queue with PostgreSQL) while an edge
publishes crops steadily. Mid-stream, an operator activates a new version through the API
(the test DAG without its car-make and slow nodes); both workers swap between batches without
a restart: every crop is stored exactly once, every crop received after both swapped carries
the new version's sha256 and lacks the dropped nodes, and ``GET /v1/workers`` shows both on
the new version. Then a version whose head is missing is activated: both workers stay on the
old one, say why in ``GET /v1/workers``, and go on storing crops with it.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lensflow.cloud.worker.amqp_queue import declare_crops_queue
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.rabbitmq import RabbitNode
from lensflow.shared.protocol import crops_topic
from tests.support.api import ApiHarness, running_api
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.postgres import PostgresCluster
from tests.support.rabbit import rabbit_node  # noqa: F401
from tests.support.worker import (
    CAMERA,
    PIPELINE,
    crop_counts,
    dead_letter_count,
    log_lines,
    mqtt_intake,
    publish,
    sample_crops,
    start_worker,
    write_cloud_config,
)

STARTUP_S = 60.0
CROPS = 160
POLL = {"version_poll_s": 0.2, "version_retry_s": 600}


def v1_text() -> str:
    """The seed: the test DAG plus a slow node (5 ms a crop), so batches are in flight."""
    document = {**PIPELINE, "pipeline": [*PIPELINE["pipeline"]]}
    document["pipeline"].append(
        {"name": "slow", "class": "slow_car_make", "params": {"delay_ms": 5}}
    )
    return yaml.safe_dump(document, sort_keys=False)


def v2_text() -> str:
    """The new version: without the car-make node (and the slow one)."""
    nodes = [node for node in PIPELINE["pipeline"] if node["name"] != "car_make"]
    return yaml.safe_dump({**PIPELINE, "pipeline": nodes}, sort_keys=False)


def v3_text() -> str:
    """A version that validates (a head's digest has the right form) but no worker can load."""
    nodes = [node for node in PIPELINE["pipeline"] if node["name"] != "car_make"]
    head: dict[str, Any] = {"name": "kind", "class": "embedding_head"}
    head |= {"depends_on": "object_detection"}
    head["params"] = {"head": "f" * 64, "embedding": "object_detection"}
    return yaml.safe_dump({**PIPELINE, "pipeline": [*nodes, head]}, sort_keys=False)


def sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def worker_folder(tmp_path: Path, name: str, *, db_url: str, intake: dict[str, Any]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(v1_text(), encoding="utf-8")
    return write_cloud_config(folder, db_url=db_url, intake=intake, worker=POLL)


def crops_by_version(db_url: str) -> list[tuple[str, str, datetime, bool]]:
    """(crop_id, pipeline_version, received_at, has a car_make result) of every crop."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT c.crop_id, c.pipeline_version, c.received_at, "
                    "(SELECT count(*) FROM classifier_results r "
                    " WHERE r.crop_pk = c.id AND r.node = 'car_make') "
                    "FROM crops c"
                )
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], _aware(r[2]), r[3] > 0) for r in rows]


def _aware(value: Any) -> datetime:
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.now().astimezone().tzinfo)


def workers_on(api: ApiHarness, digest: str) -> list[dict[str, Any]]:
    rows = api.get("/v1/workers", who="viewer").json()
    return [row for row in rows if row["sha256"] == digest and row["alive"]]


def steady_publisher(port: int, topic: str, messages: list[bytes]) -> threading.Thread:
    """Publish in chunks of 8, 40 ms apart: a steady stream across the swap."""

    def run() -> None:
        for first in range(0, len(messages), 8):
            publish(port, [(topic, m) for m in messages[first : first + 8]], client_id="edge-1")
            time.sleep(0.04)

    thread = threading.Thread(target=run, name="edge", daemon=True)
    thread.start()
    return thread


def run_swap_scenario(
    api: ApiHarness, *, db_url: str, port: int, site: str, logs: list[Path]
) -> None:
    """The scenario of the module docstring, on workers already started."""
    for log in logs:
        up = wait_for(lambda log=log: bool(log_lines(log, " up ")), timeout_s=STARTUP_S)  # type: ignore[misc]
        assert up, log.read_text(errors="replace")[-3000:]
    assert wait_for(lambda: len(workers_on(api, sha(v1_text()))) == 2, timeout_s=STARTUP_S)
    topic = crops_topic(site=site, camera=CAMERA)
    crops = sample_crops(CROPS + 20, site=site, prefix=f"live-{site}")

    # when an edge streams crops and, mid-stream, an operator activates v2 through the API
    edge = steady_publisher(port, topic, [c.message for c in crops[:CROPS]])
    assert wait_for(lambda: crop_counts(db_url)[0] >= 40, timeout_s=STARTUP_S)
    created = api.post("/v1/pipelines", who="operator", json={"yaml": v2_text(), "activate": True})
    assert created.status_code == 201, created.text
    edge.join(60)

    # then both workers run v2 without a restart, and no crop is lost or stored twice
    assert wait_for(lambda: len(workers_on(api, sha(v2_text()))) == 2, timeout_s=30)
    assert wait_for(lambda: crop_counts(db_url)[0] >= CROPS, timeout_s=60)
    assert crop_counts(db_url) == (CROPS, CROPS)
    assert dead_letter_count(db_url) == 0
    rows = crops_by_version(db_url)
    versions = {version for _, version, _, _ in rows}
    assert versions == {sha(v1_text()), sha(v2_text())}, "both versions stored crops"
    swapped_at = max(datetime.fromisoformat(w["since"]) for w in workers_on(api, sha(v2_text())))
    late = [row for row in rows if row[2] > swapped_at]
    assert late, "crops arrived after both workers swapped"
    assert all(version == sha(v2_text()) for _, version, _, _ in late)
    for _, version, _, has_car_make in rows:  # each crop's results are its version's nodes
        assert not has_car_make if version == sha(v2_text()) else True
    assert any(has for _, version, _, has in rows if version == sha(v1_text()))
    for log in logs:
        assert log_lines(log, "crop stored"), "both workers took a share of the stream"
        assert log_lines(log, "runs pipeline worker-test pipeline version"), "swapped, no restart"

    # when a version no worker can load is activated
    bad = api.post("/v1/pipelines", who="operator", json={"yaml": v3_text(), "activate": True})
    assert bad.status_code == 201, bad.text

    # then both stay on v2 and say why; the next crops are stored with v2
    def both_failed() -> bool:
        rows = workers_on(api, sha(v2_text()))
        return len(rows) == 2 and all("did not load" in row["last_error"] for row in rows)

    assert wait_for(both_failed, timeout_s=30)
    for row in workers_on(api, sha(v2_text())):
        assert f"pipeline version {bad.json()['id']}" in row["last_error"]
        assert f"expected a stored head with sha256 {'f' * 64}, found none" in row["last_error"]
        assert row["last_error_at"] is not None
    publish(port, [(topic, c.message) for c in crops[CROPS:]])
    assert wait_for(lambda: crop_counts(db_url)[0] >= CROPS + 20, timeout_s=30)
    new_rows = [
        row for row in crops_by_version(db_url) if row[0] in {c.crop_id for c in crops[CROPS:]}
    ]
    assert {version for _, version, _, _ in new_rows} == {sha(v2_text())}


def stop_all(processes: list[Any]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
            process.wait()


@pytest.mark.integration
@pytest.mark.slow
def test_mqtt_workers_swap_to_the_activated_version_and_refuse_a_broken_one(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
) -> None:
    # given two workers on one shared subscription of a private mosquitto, SQLite
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with running_api(db_url, tmp_path / "api") as api:
        folders = []
        for name in ("a", "b"):
            intake = mqtt_intake(mosquitto.port, client_id=f"live-{name}")
            intake["topic"] = "$share/workers/lensflow/v1/+/+/crops"
            folders.append(worker_folder(tmp_path, name, db_url=db_url, intake=intake))
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        processes = [start_worker(config, log) for config, log in zip(folders, logs, strict=True)]
        try:
            run_swap_scenario(api, db_url=db_url, port=mosquitto.port, site="site1", logs=logs)
        finally:
            stop_all(processes)
        stopped = api.get("/v1/workers", who="viewer").json()
        assert {row["id"] for row in stopped} == {"live-a", "live-b"}
        assert all(row["state"] == "stopped" and not row["alive"] for row in stopped)


@pytest.fixture
def live_queue(rabbit_node: RabbitNode) -> Iterator[tuple[str, str, str]]:  # noqa: F811
    """A quorum queue of this test's own site: (queue, binding key, site)."""
    token = uuid.uuid4().hex[:8]
    site = f"live-{token}"
    queue, binding = f"lensflow.test.live.{token}", f"lensflow.v1.{site}.*.crops"
    declare_crops_queue(rabbit_node.amqp_url, queue=queue, binding_key=binding)
    yield queue, binding, site
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.amqp_url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


@pytest.mark.integration
@pytest.mark.slow
def test_amqp_workers_swap_to_the_activated_version_and_refuse_a_broken_one(
    rabbit_node: RabbitNode,  # noqa: F811
    live_queue: tuple[str, str, str],
    postgres_cluster: PostgresCluster,
    tmp_path: Path,
) -> None:
    # given two workers on one RabbitMQ quorum queue, PostgreSQL
    queue, binding, site = live_queue
    db_url = postgres_cluster.create_database()
    with running_api(db_url, tmp_path / "api") as api:
        intake: dict[str, Any] = {"type": "amqp", "url": rabbit_node.amqp_url, "queue": queue}
        intake |= {"binding_key": binding, "prefetch": 16}
        folders = [worker_folder(tmp_path, n, db_url=db_url, intake=intake) for n in ("a", "b")]
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        processes = [start_worker(config, log) for config, log in zip(folders, logs, strict=True)]
        try:
            run_swap_scenario(api, db_url=db_url, port=rabbit_node.mqtt_port, site=site, logs=logs)
        finally:
            stop_all(processes)
    postgres_cluster.drop_database(make_url(db_url).database or "")
