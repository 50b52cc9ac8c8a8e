"""Cloud-worker test helpers: real crops from the sample photos, configs, a publisher, a
worker process or thread, an in-memory intake, and a slow classifier to catch a worker
mid-batch.

Load :class:`SlowCarMake` into a worker process with ``--plugins tests.support.worker``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import create_engine, text

from lensflow.cloud.worker.intake import Delivery, DeliveryHandler
from lensflow.cloud.worker.intake_mqtt import MqttIntake
from lensflow.cloud.worker.worker import Worker
from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config import load_cloud_config
from lensflow.shared.config.base import StrictModel
from lensflow.shared.images import read_image, sample_image_paths
from lensflow.shared.protocol import (
    Detection,
    Provenance,
    crops_topic,
    encode_crop,
    new_crop_header,
)

ROOT = Path(__file__).resolve().parents[2]
SITE = "site1"
CAMERA = "cam1"
TOPIC = crops_topic(site=SITE, camera=CAMERA)
PROVENANCE = Provenance(model_sha256="ab" * 32, config_hash="cfg-1", agent_version="0.1.0")
PIPELINE: dict[str, Any] = {
    "version": 1,
    "name": "worker-test",
    "pipeline": [
        {"name": "object_detection", "class": "edge_detection"},
        {
            "name": "tshirt_color",
            "class": "tshirt_color",
            "depends_on": "object_detection",
            "when": {"contains": ["object_detection.detected_classes", "person"]},
        },
        {
            "name": "car_make",
            "class": "car_make_vit",
            "depends_on": "object_detection",
            "when": "'car' in context['object_detection']['detected_classes']",
            "batch": {"max_size": 8, "max_wait_ms": 20},
        },
    ],
}
CLI = "from lensflow.cli import main\nmain()\n"
"""Run the ``lensflow`` CLI in a child with this interpreter (the venv need not be on PATH)."""


class SlowParams(StrictModel):
    """How long the slow classifier takes per image."""

    delay_ms: float = 30.0


class SlowCarMake(BaseClassifier):
    """A classifier that takes ``delay_ms`` per image, so a kill can land mid-batch."""

    key = "slow_car_make"
    version = "test-1"
    outputs = ("label",)
    Params = SlowParams
    params: SlowParams

    def process(self, image: Image, context: Context) -> Output:
        """Sleep, then label the crop by its width."""
        time.sleep(self.params.delay_ms / 1000.0)
        return {"label": "wide" if image.shape[1] > image.shape[0] else "tall"}


@dataclass(frozen=True)
class SampleCrop:
    """A crop message ready to publish, and what it should produce."""

    crop_id: str
    class_name: str
    jpeg: bytes
    message: bytes
    sha256: str


def sample_crops(count: int, *, prefix: str = "crop", site: str = SITE) -> list[SampleCrop]:
    """Real JPEG crops cut from the sample photos; even indexes are people, odd ones cars."""
    photos = [read_image(path) for path in sample_image_paths()]
    crops = []
    for index in range(count):
        frame = photos[index % len(photos)]
        height, width = frame.shape[:2]
        x1, y1 = (index * 37) % (width - 160), (index * 53) % (height - 200)
        box = (x1, y1, x1 + 160, y1 + 200)
        ok, buffer = cv2.imencode(".jpg", frame[y1 : y1 + 200, x1 : x1 + 160])
        assert ok
        jpeg = buffer.tobytes()
        class_name = "person" if index % 2 == 0 else "car"
        header = new_crop_header(
            jpeg=jpeg,
            site=site,
            camera=CAMERA,
            captured_at=datetime.now(UTC),
            detection=Detection(
                class_name=class_name,
                class_id=0 if class_name == "person" else 2,
                score=0.9,
                box=box,
                frame_width=width,
                frame_height=height,
            ),
            provenance=PROVENANCE,
            crop_id=f"{prefix}-{index:04d}",
            crop_box=box,
        )
        crops.append(
            SampleCrop(
                header.crop_id, class_name, jpeg, encode_crop(header, jpeg), header.jpeg_sha256
            )
        )
    return crops


def write_pipeline(folder: Path, *, slow_ms: float | None = None) -> Path:
    """The test DAG as YAML; with ``slow_ms``, a slow node on every crop as well."""
    document: dict[str, Any] = {**PIPELINE, "pipeline": list(PIPELINE["pipeline"])}
    if slow_ms is not None:
        document["pipeline"].append(
            {"name": "slow", "class": "slow_car_make", "params": {"delay_ms": slow_ms}}
        )
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def write_cloud_config(folder: Path, *, db_url: str, intake: dict[str, Any], **extra: Any) -> Path:
    """A cloud config YAML whose pipeline, database and crop store live in ``folder``."""
    pipeline = folder / "pipeline.yaml"
    if not pipeline.exists():
        write_pipeline(folder)
    document = {
        "pipeline": str(pipeline),
        "database": {"url": db_url},
        "crop_store": str(folder / "crops"),
        "intake": intake,
        "logging": {"level": "INFO"},
        **extra,
    }
    path = folder / "cloud.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def mqtt_intake(
    port: int, *, client_id: str, protocol: str = "v311", window: int = 64
) -> dict[str, Any]:
    """The ``intake`` section of an MQTT worker on a private broker."""
    return {
        "type": "mqtt",
        "client_id": client_id,
        "receive_maximum": window,
        "mqtt": {"port": port, "protocol": protocol, "reconnect_min_s": 0.1, "reconnect_max_s": 1},
    }


def publish(port: int, messages: list[tuple[str, bytes]], *, client_id: str = "test-edge") -> None:
    """Publish (topic, payload) pairs with QoS 1 over MQTT 3.1.1; return once all are PUBACKed."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
    )
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=20.0)
            assert info.is_published(), f"mid {info.mid} not PUBACKed"
    finally:
        client.disconnect()
        client.loop_stop()


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``lensflow cloud worker --config CONFIG --plugins ...`` as a child process."""
    command = [sys.executable, "-c", CLI, "cloud", "worker", "--config", str(config)]
    command += ["--plugins", "tests.support.plugins", "--plugins", "tests.support.worker"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)


def crop_counts(db_url: str) -> tuple[int, int]:
    """(rows, distinct crop_ids) in the crops table."""
    row = _query(db_url, "SELECT count(*), count(DISTINCT crop_id) FROM crops")
    return int(row[0]), int(row[1])


def dead_letter_count(db_url: str) -> int:
    """Rows in the dead_letters table."""
    return int(_query(db_url, "SELECT count(*) FROM dead_letters")[0])


def _query(db_url: str, sql: str) -> Any:
    """The one row a query returns."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).one()
    finally:
        engine.dispose()


def log_lines(log: Path, needle: str) -> list[str]:
    """The lines of a worker's log that contain ``needle``."""
    if not log.exists():
        return []
    return [line for line in log.read_text(errors="replace").splitlines() if needle in line]


@contextmanager
def running_worker(config_path: Path, registry: PluginRegistry) -> Iterator[Worker]:
    """A worker on its own thread, subscribed before this yields; stopped on exit."""
    worker = Worker(load_cloud_config(config_path), registry=registry)
    thread = threading.Thread(target=worker.run, name="test-worker")
    thread.start()
    try:
        assert isinstance(worker.intake, MqttIntake)
        assert worker.intake.subscribed.wait(10.0), "worker never subscribed"
        yield worker
    finally:
        worker.stop()
        thread.join(15.0)
        assert not thread.is_alive(), "worker did not stop"


class MemoryIntake:
    """An intake that hands over what the test gives it and records acks and publishes."""

    source = "mqtt"
    window = 64
    name = "memory-worker"

    def __init__(self) -> None:
        self.acked: list[Delivery] = []
        self.published: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def start(self, on_message: DeliveryHandler) -> None:
        self.on_message = on_message

    def ack(self, delivery: Delivery) -> None:
        with self._lock:
            self.acked.append(delivery)

    def publish(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.published.append((topic, payload))

    def stop(self) -> None:
        """Nothing to stop."""
