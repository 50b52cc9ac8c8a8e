"""Nothing lost when the broker crashes: crops stay in the edge's spool until the cloud's receipt.

A broker's PUBACK is not a durable receipt: mosquitto with its default persistence
(``autosave_interval 1800``) SIGKILLed while the cloud is behind loses every crop it queued
since its last save (measured before receipts: 394 produced, 32 stored). Here the edge side is
the agent's publisher and spool with receipts on; the cloud is a real worker process. The
worker is paused (crops pile up in the broker), the broker SIGKILLed and restarted, the worker
resumed or SIGKILLed and restarted: every crop ends up stored exactly once, and the spool
empties only when their receipts arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lensflow.edge.publisher import MqttPublisher
from lensflow.edge.receipts import ReceiptPolicy
from lensflow.edge.spool import Spool
from lensflow.services.mosquitto import MosquittoBroker, MosquittoConfig
from lensflow.services.process import free_port
from lensflow.services.rabbitmq import RabbitNode
from lensflow.shared.config.common import MqttConfig
from lensflow.shared.protocol import receipts_topic, status_topic
from tests.support.brokers import wait_for
from tests.support.rabbit import rabbit_node  # noqa: F401
from tests.support.worker import (
    CAMERA,
    SITE,
    TOPIC,
    crop_counts,
    log_lines,
    mqtt_intake,
    sample_crops,
    start_worker,
    write_cloud_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CROPS = 120
RECEIPT_TIMEOUT_S = 3.0


def edge_publisher(port: int, spool_path: Path, *, client_id: str) -> MqttPublisher:
    """What the edge agent runs: spool, publisher with receipts, subscribed to its receipts."""
    spool = Spool(spool_path, max_bytes=200_000_000)
    publisher = MqttPublisher(
        MqttConfig(port=port, protocol="v311", reconnect_min_s=0.1, reconnect_max_s=1),
        client_id=client_id,
        spool=spool,
        inflight=20,
        receipts=ReceiptPolicy(timeout_s=RECEIPT_TIMEOUT_S, max_sends=50),
        will_topic=status_topic(site=SITE, camera="edge-1"),
        will_payload=b'{"state": "offline"}',
    )
    publisher.subscribe(receipts_topic(site=SITE, camera=CAMERA), publisher.on_receipts)
    return publisher


def worker_up(log: Path) -> bool:
    return bool(log_lines(log, "worker") and log_lines(log, "running pipeline"))


@pytest.fixture
def default_persistence_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """mosquitto as installed: persistence on, saved every 1800 s (its default)."""
    folder = tmp_path / "broker"
    config = MosquittoConfig(
        port=free_port(),
        data_dir=folder,
        autosave_interval_s=1800,
        run_as_root=os.geteuid() == 0,
    )
    broker = MosquittoBroker(folder, config=config)
    broker.start()
    yield broker
    broker.kill()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("worker_fate", ["paused then resumed", "SIGKILLed then restarted"])
def test_a_broker_crash_with_the_cloud_behind_loses_no_crop(
    default_persistence_broker: MosquittoBroker, tmp_path: Path, worker_fate: str
) -> None:
    broker = default_persistence_broker
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(broker.port, client_id="w-receipts")
    )
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)
    publisher = edge_publisher(broker.port, tmp_path / "spool.sqlite3", client_id="edge-1")
    try:
        assert wait_for(lambda: worker_up(log), timeout_s=120), log.read_text()[-2000:]
        # given a worker that falls behind: paused, while the edge sends every crop
        worker.send_signal(signal.SIGSTOP)
        publisher.start()
        crops = sample_crops(CROPS, prefix="e2e")
        for crop in crops:
            publisher.enqueue(TOPIC, crop.message, key=crop.crop_id)
        assert wait_for(lambda: publisher.stats()["acked"] >= CROPS, timeout_s=60)
        assert crop_counts(db_url) == (0, 0)  # the broker holds them all, acknowledged
        assert publisher.stats()["spool_awaiting_receipt"] == CROPS
        # when the broker is SIGKILLed before it saves its queue, then restarted
        broker.kill()
        broker.start()
        if worker_fate == "paused then resumed":
            worker.send_signal(signal.SIGCONT)
        else:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(config, log)
        # then every crop is stored exactly once, and only then is the spool empty
        assert wait_for(lambda: crop_counts(db_url) == (CROPS, CROPS), timeout_s=120), (
            crop_counts(db_url),
            publisher.stats(),
        )
        assert publisher.wait_drained(60), publisher.stats()
        stats = publisher.stats()
        assert stats["resent"] > 0  # the lost crops came back from the edge's spool
        assert stats["confirmed"] == CROPS and stats["spool_expired"] == 0
    finally:
        publisher.stop(drain_timeout_s=0)
        stop(worker)


def test_on_the_amqp_intake_receipts_reach_the_edge_through_rabbitmq(
    rabbit_node: RabbitNode,  # noqa: F811
    tmp_path: Path,
) -> None:
    # given a worker on a RabbitMQ quorum queue, the edge publishing over RabbitMQ's MQTT plugin
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    site = "rsite"
    topic = f"lensflow/v1/{site}/{CAMERA}/crops"
    intake = {
        "type": "amqp",
        "url": rabbit_node.amqp_url,
        "queue": "receipts-e2e",
        "binding_key": f"lensflow.v1.{site}.*.crops",
    }
    config = write_cloud_config(tmp_path, db_url=db_url, intake=intake)
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=200_000_000)
    publisher = MqttPublisher(
        MqttConfig(port=rabbit_node.mqtt_port, protocol="v311", reconnect_max_s=1),
        client_id="edge-amqp",
        spool=spool,
        receipts=ReceiptPolicy(timeout_s=RECEIPT_TIMEOUT_S, max_sends=50),
        will_topic=status_topic(site=site, camera="edge-amqp"),
        will_payload=b'{"state": "offline"}',
    )
    publisher.subscribe(receipts_topic(site=site, camera=CAMERA), publisher.on_receipts)
    try:
        assert wait_for(lambda: worker_up(log), timeout_s=120), log.read_text()[-2000:]
        publisher.start()
        crops = sample_crops(40, prefix="amqp", site=site)
        # when the edge sends its crops
        for crop in crops:
            publisher.enqueue(topic, crop.message, key=crop.crop_id)
        # then they are stored, and the receipts, published to amq.topic, empty the spool
        assert wait_for(lambda: crop_counts(db_url) == (40, 40), timeout_s=90)
        assert publisher.wait_drained(60), publisher.stats()
        assert publisher.stats()["confirmed"] == 40
    finally:
        publisher.stop(drain_timeout_s=0)
        stop(worker)
