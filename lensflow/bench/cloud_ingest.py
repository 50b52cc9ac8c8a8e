"""Ingest: crops/s from MQTT into the results database, beside the broker's own rate.

One publisher (a child process, MQTT v5, QoS 1) sends the same N real crop messages to a
private mosquitto twice per round: once to a plain paho subscriber that only counts (the
broker's publish → receive rate on this machine), once to a real
:class:`lensflow.cloud.worker.Worker`
whose pipeline is a single no-op node (its own cost: intake, envelope and JPEG header checks
— a node that needs no pixels gets no decode —, crop store, database commit,
acknowledgement). Both consumers run in this process, with the same
protocol, QoS and in-flight window; rounds alternate the two and the medians are kept.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import queue
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lensflow.bench import BenchError
from lensflow.bench.plugins import NOOP_CLASS
from lensflow.bench.samples import crop_images
from lensflow.cloud.worker.intake import Delivery, DeliveryHandler
from lensflow.cloud.worker.intake_mqtt import MqttIntake
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.cloud.worker.worker import Worker
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.config.cloud import MqttIntake as MqttIntakeConfig
from lensflow.shared.protocol import (
    Detection,
    Provenance,
    crops_topic,
    encode_crop,
    new_crop_header,
)

logger = logging.getLogger(__name__)

SITE, CAMERA = "bench", "cam01"
TOPIC = crops_topic(site=SITE, camera=CAMERA)
WINDOW = 64  # in-flight window (MQTT 5 ReceiveMaximum) of both consumers
PUBLISHER_INFLIGHT = 100
BATCH = {"max_size": 32, "max_wait_ms": 5}
_TIMEOUT_S = 300.0


@dataclass
class IngestBench:
    """Crops per second into the database and through the bare broker (medians of rounds)."""

    crops: int
    database: str
    message_bytes: int
    worker_per_s: float = 0.0
    broker_per_s: float = 0.0
    worker_rounds: list[float] = field(default_factory=list)
    broker_rounds: list[float] = field(default_factory=list)
    stored: int = 0

    @property
    def ratio(self) -> float:
        """Worker rate over the bare broker rate (1.0 = the worker costs nothing)."""
        return self.worker_per_s / self.broker_per_s if self.broker_per_s else 0.0


def crop_messages(count: int, *, prefix: str = "bench") -> list[bytes]:
    """``count`` crop messages, each a distinct real JPEG cut from the sample photos."""
    provenance = Provenance(model_sha256="ab" * 32, config_hash="bench", agent_version="0.1.0")
    start = datetime.now(UTC)
    messages = []
    for index, (image, box, (cols, rows)) in enumerate(crop_images(count)):
        ok, buffer = cv2.imencode(".jpg", image)
        if not ok:
            raise BenchError("OpenCV could not encode a sample crop as JPEG")
        jpeg = buffer.tobytes()
        header = new_crop_header(
            jpeg=jpeg,
            site=SITE,
            camera=CAMERA,
            captured_at=start + timedelta(milliseconds=index),
            detection=Detection(
                class_name="person",
                class_id=0,
                score=0.9,
                box=box,
                frame_width=cols,
                frame_height=rows,
            ),
            provenance=provenance,
            crop_id=f"{prefix}-{index:07d}",
            crop_box=box,
        )
        messages.append(encode_crop(header, jpeg))
    return messages


def run_ingest(
    *,
    crops: int,
    folder: Path,
    database_url: Callable[[int], str] | None = None,
    rounds: int = 2,
) -> IngestBench:
    """Measure both consumers ``rounds`` times, alternated, on a private mosquitto.

    Args:
        crops: Messages per measurement.
        folder: Scratch folder (broker data, databases, crop stores).
        database_url: The worker's database URL for a round; a fresh SQLite file when None.
        rounds: Alternated measurements of each consumer; the medians are reported.

    Returns:
        The figures.

    Raises:
        BrokerError: If mosquitto cannot be started.
        BenchError: If the publisher fails or a consumer does not get every message in time.

    """
    messages = crop_messages(crops)
    payloads = folder / "payloads.pickle"
    payloads.write_bytes(pickle.dumps(messages))
    result = IngestBench(
        crops=crops,
        database="sqlite" if database_url is None else "postgresql",
        message_bytes=int(statistics.mean(len(m) for m in messages)),
    )
    with MosquittoBroker(folder / "broker") as broker, _Publisher(broker.port, payloads) as pub:
        for round_ in range(rounds):
            result.broker_rounds.append(_count_only(broker, pub, crops=crops))
            url = (
                database_url(round_)
                if database_url
                else f"sqlite:///{folder / f'worker-{round_}.sqlite3'}"
            )
            rate, stored = _through_worker(broker, pub, crops=crops, url=url, folder=folder)
            result.worker_rounds.append(rate)
            result.stored = stored
    result.broker_per_s = statistics.median(result.broker_rounds)
    result.worker_per_s = statistics.median(result.worker_rounds)
    return result


class _Publisher:
    """A child process that publishes the payload file's messages each time it is told to."""

    def __init__(self, port: int, payloads: Path) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._commands: Queue[bool] = context.Queue()
        self._replies: Queue[str] = context.Queue()
        self._process = context.Process(
            target=_publisher_main,
            args=(port, str(payloads), self._commands, self._replies),
            name="bench-publisher",
        )

    def __enter__(self) -> _Publisher:
        self._process.start()
        try:
            self._expect("ready")
        except BenchError:
            self.__exit__()
            raise
        return self

    def publish_all(self) -> None:
        """Start one pass over the messages (returns at once)."""
        self._commands.put(True)

    def wait_sent(self) -> None:
        """Wait until the pass is PUBACKed."""
        self._expect("sent")

    def _expect(self, what: str) -> None:
        """Wait for the child's next reply; it must be ``what``."""
        try:
            reply = self._replies.get(timeout=_TIMEOUT_S)
        except queue.Empty:
            raise BenchError(f"bench publisher: no {what!r} within {_TIMEOUT_S:g} s") from None
        if reply != what:
            raise BenchError(f"bench publisher: expected {what!r}, got {reply!r}")

    def __exit__(self, *_exc: object) -> None:
        self._commands.put(False)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


def _publisher_main(port: int, payloads: str, commands: Queue[bool], replies: Queue[str]) -> None:
    """The publisher child: connect, then publish every message once per command."""
    messages: list[bytes] = pickle.loads(Path(payloads).read_bytes())  # noqa: S301 - our file
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id="bench-publisher",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(PUBLISHER_INFLIGHT)
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        replies.put("ready")
        while commands.get():
            infos = [client.publish(TOPIC, payload, qos=1) for payload in messages]
            for info in infos:
                info.wait_for_publish(timeout=_TIMEOUT_S)
            replies.put("sent" if all(i.is_published() for i in infos) else "not all PUBACKed")
    except Exception as err:  # reported to the parent, which raises
        replies.put(f"publisher failed: {err!r}")
    finally:
        client.disconnect()
        client.loop_stop()


def _count_only(broker: MosquittoBroker, publisher: _Publisher, *, crops: int) -> float:
    """Messages per second into a plain paho subscriber that only counts them."""
    done, count = threading.Event(), [0]

    def on_message(_client: mqtt.Client, _userdata: Any, _message: mqtt.MQTTMessage) -> None:
        count[0] += 1
        if count[0] >= crops:
            done.set()

    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = WINDOW
    client.connect(broker.host, broker.port, properties=properties)
    client.subscribe(TOPIC, qos=1)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise BenchError("bench counter: no SUBACK within 10 s")
        return _timed(publisher, done, crops=crops, who="the counting subscriber")
    finally:
        client.disconnect()
        client.loop_stop()


def _through_worker(
    broker: MosquittoBroker, publisher: _Publisher, *, crops: int, url: str, folder: Path
) -> tuple[float, int]:
    """Crops per second committed and acknowledged by a real worker; and how many it stored."""
    config = _worker_config(broker, url=url, folder=folder)
    assert isinstance(config.intake, MqttIntakeConfig)
    metrics = WorkerMetrics()
    mqtt_intake = MqttIntake(config.intake, metrics=metrics)
    intake = _CountingIntake(mqtt_intake, expected=crops)
    worker = Worker(config, intake=intake, metrics=metrics)
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    thread.start()
    try:
        if not mqtt_intake.subscribed.wait(30):
            raise BenchError("bench worker: no SUBACK within 30 s")
        rate = _timed(publisher, intake.done, crops=crops, who="the worker")
        with worker.engine.connect() as connection:
            stored = connection.exec_driver_sql("SELECT count(*) FROM crops").scalar_one()
    finally:
        worker.stop()
        thread.join(timeout=30)
        _end_session(broker, config.intake.client_id)
    return rate, int(stored)


def _end_session(broker: MosquittoBroker, client_id: str) -> None:
    """End a worker's persistent session, so the broker stops queueing later rounds for it."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(broker.host, broker.port, clean_start=True, properties=properties)
    client.loop_start()
    try:
        if not connected.wait(10):
            logger.warning("could not end the session of %s: no CONNACK", client_id)
    finally:
        client.disconnect()
        client.loop_stop()


def _timed(publisher: _Publisher, done: threading.Event, *, crops: int, who: str) -> float:
    """Publish every message; messages per second until ``done`` (the last one consumed)."""
    start = time.perf_counter()
    publisher.publish_all()
    if not done.wait(_TIMEOUT_S):
        raise BenchError(f"{who} did not get all {crops} messages within {_TIMEOUT_S:g} s")
    elapsed = time.perf_counter() - start
    publisher.wait_sent()
    return crops / elapsed


def _worker_config(broker: MosquittoBroker, *, url: str, folder: Path) -> CloudConfig:
    """A cloud config: the no-op pipeline, ``url``, an MQTT v5 intake on the broker."""
    name = url.rsplit("/", 1)[-1].replace(".", "-")
    pipeline = folder / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "bench-noop",
                "pipeline": [{"name": "noop", "class": NOOP_CLASS, "batch": BATCH}],
            }
        ),
        encoding="utf-8",
    )
    return CloudConfig.model_validate(
        {
            "pipeline": str(pipeline),
            "database": {"url": url},
            "crop_store": str(folder / f"crops-{name}"),
            "intake": {
                "type": "mqtt",
                "client_id": f"bench-worker-{name}",
                "receive_maximum": WINDOW,
                "mqtt": {"host": broker.host, "port": broker.port, "protocol": "v5"},
            },
        }
    )


class _CountingIntake:
    """An intake that passes everything to a real one and counts acknowledgements."""

    def __init__(self, inner: MqttIntake, *, expected: int) -> None:
        self.inner = inner
        self.source, self.window, self.name = inner.source, inner.window, inner.name
        self.expected = expected
        self.done = threading.Event()
        self._acked = 0
        self._lock = threading.Lock()

    def start(self, on_message: DeliveryHandler) -> None:
        """Start the real intake."""
        self.inner.start(on_message)

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge through the real intake; set :attr:`done` at the expected count."""
        self.inner.ack(delivery)
        with self._lock:
            self._acked += 1
            if self._acked >= self.expected:
                self.done.set()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish through the real intake (receipts)."""
        self.inner.publish(topic, payload)

    def stop(self) -> None:
        """Stop the real intake."""
        self.inner.stop()
