"""RabbitMQ as the crops work queue: edges publish MQTT 3.1.1, cloud workers consume AMQP.

The edge's :class:`~lensflow.edge.publisher.MqttPublisher` (spooled, QoS 1) publishes to RabbitMQ's
MQTT
plugin, which routes into ``amq.topic`` (``/`` becomes ``.``); the quorum queue declared by
:func:`~lensflow.cloud.worker.amqp_queue.declare_crops_queue` holds the crops for pika consumers.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from lensflow.cloud.worker.amqp_queue import CROPS_QUEUE, RabbitError, declare_crops_queue
from lensflow.edge.publisher import MqttPublisher
from lensflow.edge.spool import Spool
from lensflow.services.rabbitmq import RabbitNode, RabbitNodeError, find_rabbitmq_server
from lensflow.shared.config.common import MqttConfig
from tests.support.rabbit import rabbit_node  # noqa: F401

pytestmark = pytest.mark.integration

TOPIC = "lensflow/v1/site1/cam1/crops"
ROUTING_KEY = "lensflow.v1.site1.cam1.crops"  # the MQTT plugin turns "/" into "."


def crop_payload(index: int) -> bytes:
    """A binary crop-like payload with NUL bytes, distinct per index."""
    return b"\x00crop\x00" + index.to_bytes(4, "big") + random.Random(index).randbytes(2_000)


@pytest.fixture
def crops_queue(rabbit_node: RabbitNode) -> str:  # noqa: F811
    """The deploy step, then an empty queue: the node is shared by the whole session."""
    declare_crops_queue(rabbit_node.amqp_url)
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.amqp_url))
    try:
        connection.channel().queue_purge(CROPS_QUEUE)
    finally:
        connection.close()
    return CROPS_QUEUE


def publish_crops(node: RabbitNode, spool_dir: Path, payloads: list[bytes]) -> None:
    """Publish through the edge publisher (MQTT 3.1.1, QoS 1); return once all are PUBACKed."""
    spool = Spool(spool_dir / "spool.db", max_bytes=64 << 20)
    config = MqttConfig(port=node.mqtt_port, protocol="v311", client_id="test-site1-cam1")
    publisher = MqttPublisher(
        config,
        spool=spool,
        will_topic="lensflow/v1/site1/cam1/status",
        will_payload=b"offline",
    )
    publisher.start()
    try:
        for index, payload in enumerate(payloads):
            publisher.enqueue(TOPIC, payload, key=f"crop-{index}")
        assert publisher.wait_drained(20.0), f"not all PUBACKed: {publisher.stats()}"
    finally:
        publisher.stop(drain_timeout_s=1.0)
        spool.close()


def accepts_connections(port: int) -> bool:
    """Whether something listens on ``127.0.0.1:port``.

    A TCP self-connect does not count: with nothing listening on a port of the ephemeral
    range, which is where the node's free ports come from, the kernel can pick that very
    port as the source and "connect" the socket to itself.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            return bool(sock.getsockname() != sock.getpeername())
    except OSError:
        return False


def ports_still_accepting(ports: list[int], *, timeout_s: float) -> list[int]:
    """Poll until none of ``ports`` accepts a connection; return those that still do at the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        accepting = [port for port in ports if accepts_connections(port)]
        if not accepting or time.monotonic() >= deadline:
            return accepting
        time.sleep(0.05)


def consume(amqp_url: str, queue: str, *, count: int) -> list[tuple[str, bytes, bool]]:
    """Consume with manual acks until ``count`` arrive, plus anything left after them.

    Returns:
        (routing key, body, redelivered) per delivery, in delivery order.

    """
    received: list[tuple[str, bytes, bool]] = []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=20)
        for method, _props, body in channel.consume(queue, inactivity_timeout=10.0):
            if method is None:
                break  # nothing for 10 s: fewer than expected arrived
            received.append((method.routing_key, body, method.redelivered))
            channel.basic_ack(method.delivery_tag)
            if len(received) == count:
                break
        channel.cancel()  # requeues prefetched extras, which the gets below then see
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            received.append((method.routing_key, body, method.redelivered))
    finally:
        connection.close()
    return received


def test_every_mqtt_crop_reaches_the_quorum_queue_exactly_once(
    rabbit_node: RabbitNode,  # noqa: F811
    crops_queue: str,
    tmp_path: Path,
) -> None:
    # given the crops queue declared before the edge publishes
    payloads = [crop_payload(index) for index in range(100)]

    # when the edge publishes 100 binary crops over MQTT 3.1.1 with QoS 1
    publish_crops(rabbit_node, tmp_path, payloads)

    # then a worker receives each exactly once, byte for byte, with the translated key
    received = consume(rabbit_node.amqp_url, crops_queue, count=len(payloads))
    assert {key for key, _, _ in received} == {ROUTING_KEY}
    assert not any(redelivered for _, _, redelivered in received)
    counts = Counter(body for _, body, _ in received)
    assert len(received) == len(payloads), f"expected 100 deliveries, got {len(received)}"
    assert counts == Counter(payloads)


def test_mqtt_v5_client_gets_no_connack(rabbit_node: RabbitNode) -> None:  # noqa: F811
    # given a client speaking MQTT 5, which RabbitMQ 3.10's plugin does not support
    connack = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="test-v5", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_connect = lambda *_args: connack.set()

    # when it connects
    client.connect("127.0.0.1", rabbit_node.mqtt_port)
    client.loop_start()
    try:
        # then no CONNACK ever arrives: edges must be configured with protocol "v311"
        assert not connack.wait(2.0)
    finally:
        client.disconnect()
        client.loop_stop()


def test_declare_crops_queue_is_idempotent(rabbit_node: RabbitNode) -> None:  # noqa: F811
    # given the crops queue already declared (a previous deploy)
    declare_crops_queue(rabbit_node.amqp_url)

    # when the deploy step runs again, then it succeeds and the queue is still there
    declare_crops_queue(rabbit_node.amqp_url)
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.amqp_url))
    try:
        connection.channel().queue_declare(CROPS_QUEUE, passive=True)
    finally:
        connection.close()


def test_declare_crops_queue_refuses_a_classic_queue_of_the_same_name(
    rabbit_node: RabbitNode,  # noqa: F811
) -> None:
    # given a classic queue where the crops queue should be
    name = "lensflow.test.classic"
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.amqp_url))
    connection.channel().queue_declare(name, durable=True)
    try:
        # when the deploy step declares it, then the error says a quorum queue was expected
        with pytest.raises(RabbitError, match="durable quorum queue"):
            declare_crops_queue(rabbit_node.amqp_url, queue=name)
    finally:
        connection.channel().queue_delete(name)
        connection.close()


def test_acknowledged_crops_survive_a_broker_sigkill(
    rabbit_node: RabbitNode,  # noqa: F811
    crops_queue: str,
    tmp_path: Path,
) -> None:
    # given crops the broker PUBACKed, in a quorum queue declared over 1 s ago (one killed
    # sooner can come back without a leader)
    payloads = [crop_payload(index) for index in range(10)]
    publish_crops(rabbit_node, tmp_path, payloads)
    time.sleep(1.0)

    # when the broker is SIGKILLed and started again on the same ports
    rabbit_node.kill()
    assert not rabbit_node.is_running
    # kill() returns once no process of the node is seen by its environment tag, which a
    # killed Erlang VM loses as soon as its main thread exits; a thread of it that is slow to
    # die (blocked in an fsync, say) keeps its listeners accepting until that thread is gone
    ports = [rabbit_node.amqp_port, rabbit_node.mqtt_port]
    accepting = ports_still_accepting(ports, timeout_s=10.0)
    assert not accepting, (
        f"expected the killed broker's ports {ports} to refuse connections within 10 s, "
        f"but {accepting} still accept"
    )
    rabbit_node.start()

    # then every acknowledged crop is still delivered
    received = consume(rabbit_node.amqp_url, crops_queue, count=len(payloads))
    assert Counter(body for _, body, _ in received) == Counter(payloads)


def test_missing_rabbitmq_server_names_the_install_command(tmp_path: Path) -> None:
    # given no rabbitmq-server script where it is expected
    missing = tmp_path / "rabbitmq-server"

    # when it is looked up or a node is started, then the error says how to install it
    with pytest.raises(RabbitNodeError, match=r"apt-get install rabbitmq-server"):
        find_rabbitmq_server(missing)
    with pytest.raises(RabbitNodeError, match=str(missing)):
        RabbitNode(tmp_path / "node", executable=missing).start()
