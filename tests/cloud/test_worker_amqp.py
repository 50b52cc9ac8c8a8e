"""AMQP intake specs: worker processes sharing a RabbitMQ quorum queue fed over MQTT.

Edges publish MQTT 3.1.1 to RabbitMQ's MQTT plugin; two ``lensflow cloud worker`` processes
consume the quorum queue. One is SIGKILLed mid-batch and not restarted: its unacked crops go
to the other, and every crop is stored exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from lensflow.cloud.worker import Worker, WorkerMetrics
from lensflow.cloud.worker.amqp_queue import declare_crops_queue
from lensflow.cloud.worker.intake_amqp import AmqpIntake, topic_of
from lensflow.services.rabbitmq import RabbitNode
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config import load_cloud_config
from lensflow.shared.config.cloud import AmqpIntake as AmqpIntakeConfig
from lensflow.shared.protocol import crops_topic
from tests.support.brokers import wait_for
from tests.support.rabbit import rabbit_node  # noqa: F401
from tests.support.worker import (
    CAMERA,
    crop_counts,
    dead_letter_count,
    log_lines,
    publish,
    sample_crops,
    start_worker,
    write_cloud_config,
    write_pipeline,
)

STARTUP_S = 40.0
CROPS = 120


def test_topic_of_turns_a_routing_key_back_into_its_topic() -> None:
    # RabbitMQ 3.10's MQTT plugin turns "/" into "." (and leaves "." alone)
    assert topic_of("lensflow.v1.site1.cam1.crops") == "lensflow/v1/site1/cam1/crops"


@pytest.fixture
def crops_queue(rabbit_node: RabbitNode) -> Iterator[tuple[str, str, str]]:  # noqa: F811
    """A quorum queue of this test's own site, declared before edges publish.

    Yields:
        (queue, binding key, site).

    """
    token = uuid.uuid4().hex[:8]
    site = f"wq-{token}"
    queue, binding = f"lensflow.test.crops.{token}", f"lensflow.v1.{site}.*.crops"
    declare_crops_queue(rabbit_node.amqp_url, queue=queue, binding_key=binding)
    yield queue, binding, site
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.amqp_url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


@pytest.mark.integration
@pytest.mark.slow
def test_two_workers_share_the_queue_and_a_killed_ones_crops_go_to_the_other(
    rabbit_node: RabbitNode,  # noqa: F811
    crops_queue: tuple[str, str, str],
    db_url: str,
    tmp_path: Path,
) -> None:
    # given two worker processes on one quorum queue (prefetch 16, a slow node: 25 ms a crop)
    queue, binding, site = crops_queue
    write_pipeline(tmp_path, slow_ms=25)
    intake = {
        "type": "amqp",
        "url": rabbit_node.amqp_url,
        "queue": queue,
        "binding_key": binding,
        "prefetch": 16,
    }
    config = write_cloud_config(tmp_path, db_url=db_url, intake=intake)
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [start_worker(config, log) for log in logs]
    try:
        for log, process in zip(logs, workers, strict=True):
            up = wait_for(lambda log=log: bool(log_lines(log, "amqp up")), timeout_s=STARTUP_S)
            assert up and process.poll() is None, log.read_text(errors="replace")[-3000:]

        # when an edge publishes 120 crops over MQTT, and both workers are busy with them
        topic = crops_topic(site=site, camera=CAMERA)
        publish(rabbit_node.mqtt_port, [(topic, c.message) for c in sample_crops(CROPS, site=site)])
        assert wait_for(
            lambda: all(log_lines(log, "crop stored") for log in logs), timeout_s=STARTUP_S
        )

        # and one is SIGKILLed mid-batch, and not restarted
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        by_a = len(log_lines(logs[0], "crop stored"))
        assert 0 < by_a < CROPS

        # then the other one stores the rest: every crop exactly once
        assert wait_for(lambda: crop_counts(db_url)[0] >= CROPS, timeout_s=STARTUP_S)
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=45) == 0
        assert crop_counts(db_url) == (CROPS, CROPS)
        by_b = log_lines(logs[1], "crop stored") + log_lines(logs[1], "crop duplicate")
        assert by_a + len(by_b) >= CROPS
        assert log_lines(logs[1], "redelivered=True"), "the killed worker's crops came back"
        assert dead_letter_count(db_url) == 0, "no crop should be refused"
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_reconnects_after_a_broker_restart_and_dead_letters_garbage(
    rabbit_node: RabbitNode,  # noqa: F811
    crops_queue: tuple[str, str, str],
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker in this process on the quorum queue, reconnecting within a second
    queue, binding, site = crops_queue
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    intake = {"type": "amqp", "url": rabbit_node.amqp_url, "queue": queue, "binding_key": binding}
    config = load_cloud_config(write_cloud_config(tmp_path, db_url=db_url, intake=intake))
    assert isinstance(config.intake, AmqpIntakeConfig)
    metrics = WorkerMetrics()
    amqp_intake = AmqpIntake(config.intake, metrics=metrics, reconnect_max_s=1.0)
    worker = Worker(config, registry=registry, intake=amqp_intake, metrics=metrics)
    thread = threading.Thread(target=worker.run, name="test-amqp-worker")
    thread.start()
    topic = crops_topic(site=site, camera=CAMERA)
    crops = sample_crops(20, site=site)
    try:
        publish(rabbit_node.mqtt_port, [(topic, c.message) for c in crops[:10]])
        assert wait_for(lambda: crop_counts(db_url)[0] == 10, timeout_s=20)

        # when the broker is SIGKILLed and started again (the queue is over 1 s old)
        time.sleep(1.0)
        rabbit_node.kill()
        rabbit_node.start()

        # then the worker consumes again: new crops are stored, garbage is a dead letter
        publish(rabbit_node.mqtt_port, [(topic, b"garbage")])
        publish(rabbit_node.mqtt_port, [(topic, c.message) for c in crops[10:]])
        assert wait_for(lambda: crop_counts(db_url)[0] == 20, timeout_s=30)
        assert wait_for(lambda: dead_letter_count(db_url) == 1, timeout_s=5)
    finally:
        worker.stop()
        thread.join(20.0)
    assert not thread.is_alive()
    assert crop_counts(db_url) == (20, 20)
    connects = worker.metrics.registry.get_sample_value("lensflow_worker_intake_connects_total")
    assert connects is not None and connects >= 2
