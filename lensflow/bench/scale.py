"""``lensflow bench scale``: 1 → 2 worker processes on the RabbitMQ quorum queue, in one run.

A private RabbitMQ (MQTT plugin) and database are started; an edge-like MQTT 3.1.1 client
publishes N real crop messages (the wire protocol of :mod:`lensflow.shared.protocol`) once, and the
``amq.topic`` binding copies each into one durable quorum queue per phase, all before any
worker starts, so publishing does not compete with the workers for the CPU. Then:

1. one ``lensflow cloud worker`` process drains its queue;
2. two of them drain theirs (the throughput ratio 2 / 1 is the figure, target 1.8);
3. two drain a third copy, and one is SIGKILLed mid-run: its unacknowledged crops go back to
   the queue and to the survivor.

The DAG is CPU-bound with one inference thread per worker: the real EfficientNet-Lite0
(``onnx_classifier``, ONNX Runtime with ``threads: 1``). After each phase the database must
hold every published ``crop_id`` exactly once with exactly one ``ok`` result each, no dead
letter, and an empty queue. A phase is :mod:`lensflow.bench.scale_phase`; its worker processes are
:mod:`lensflow.bench.scale_workers`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lensflow.bench import BenchError
from lensflow.bench.cloud import IngestDatabase
from lensflow.bench.cloud_ingest import TOPIC, crop_messages
from lensflow.bench.scale_phase import (
    BINDING,
    NODE,
    Phase,
    PhaseSetup,
    queue_depth,
    queue_name,
    run_phase,
)
from lensflow.cloud.worker.amqp_queue import declare_crops_queue
from lensflow.services.postgres import PostgresCluster
from lensflow.services.rabbitmq import RabbitNode
from lensflow.shared.config.common import MqttConfig
from lensflow.shared.mqtt import make_client
from lensflow.shared.protocol import decode_crop

TARGET = 1.8
"""Throughput of 2 workers over 1 worker that counts as scaling out."""
_POLL_S = 0.2


@dataclass
class ScaleBench:
    """Figures and checks of one ``bench scale`` run."""

    crops: int
    database: str
    model: str
    batch: int
    prefetch: int
    pinned: bool = False
    message_bytes: int = 0
    phases: list[Phase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Crops/s of 2 workers over 1 (0.0 until both phases ran)."""
        rates = {phase.workers: phase.per_s for phase in self.phases if phase.killed is None}
        return rates[2] / rates[1] if rates.get(1) and 2 in rates else 0.0

    @property
    def ok(self) -> bool:
        """Whether every phase stored every crop exactly once."""
        return not any(phase.problems() for phase in self.phases)

    def as_json(self) -> dict[str, Any]:
        """Everything, with each phase's rate and problems, as JSON-ready data."""
        document = asdict(self)
        for entry, phase in zip(document["phases"], self.phases, strict=True):
            entry["per_s"] = phase.per_s
            entry["problems"] = phase.problems()
        document["ratio"] = {"value": self.ratio, "target": TARGET, "met": self.ratio >= TARGET}
        document["ok"] = self.ok
        return document


def run_scale_bench(
    *,
    crops: int,
    classifier: Path,
    database: IngestDatabase = "sqlite",
    kill: bool = True,
    batch: int = 8,
    prefetch: int = 16,
    pin: bool = False,
    progress: Callable[[str], object] = print,
) -> ScaleBench:
    """Publish ``crops`` crops, then drain them with 1 worker, 2 workers, and 2 with a kill.

    Args:
        crops: Crop messages per phase.
        classifier: The ONNX classifier file (EfficientNet-Lite0 by default in the CLI).
        database: SQLite files, or databases of a private PostgreSQL (one per phase).
        kill: Run the third phase (SIGKILL one of two workers mid-run).
        batch: The classifier node's batch size.
        prefetch: Each worker's AMQP prefetch (its in-flight window; at least ``batch``).
        pin: Pin worker n to CPU n - 1, so 1 worker has 1 core and 2 workers 2 (as a CPU
            limit of 1 per worker would); unpinned, the single worker's side threads (JPEG
            decoders, file writers, AMQP I/O) also use the idle second core.
        progress: Called with a line before each step.

    Returns:
        The figures and checks; :attr:`ScaleBench.ok` says whether nothing was lost.

    Raises:
        BenchError: If the crops cannot be published or a worker does not start or finish.
        LensflowError: If RabbitMQ or PostgreSQL cannot be started.
        ValueError: If ``prefetch`` < ``batch``.

    """
    if prefetch < batch:
        raise ValueError(f"expected prefetch >= batch, got prefetch {prefetch}, batch {batch}")
    messages = crop_messages(crops, prefix="scale")
    result = ScaleBench(crops, database, str(classifier), batch, prefetch, pinned=pin)
    result.message_bytes = sum(len(message) for message in messages) // max(1, len(messages))
    phases = [("one", "1 worker", 1, False), ("two", "2 workers", 2, False)]
    if kill:
        phases.append(("kill", "2 workers, 1 SIGKILLed", 2, True))
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-scale-") as scratch:
        folder = Path(scratch)
        with _database(database) as database_url, RabbitNode(folder / "rabbit") as node:
            progress(f"RabbitMQ up (AMQP {node.amqp_port}, MQTT {node.mqtt_port})")
            for key, *_ in phases:
                declare_crops_queue(node.amqp_url, queue=queue_name(key), binding_key=BINDING)
            progress(f"publishing {crops} crops over MQTT 3.1.1 into {len(phases)} queues ...")
            _publish(node, messages)
            _wait_queued(node, [queue_name(key) for key, *_ in phases], crops)
            run = PhaseSetup(
                node=node,
                database_url=database_url,
                folder=folder,
                pipeline=_write_pipeline(folder, classifier, batch=batch),
                prefetch=prefetch,
                pin=pin,
                crop_ids=frozenset(decode_crop(m).header.crop_id for m in messages),
            )
            for key, name, workers, with_kill in phases:
                progress(f"{name}: draining {crops} crops ...")
                result.phases.append(run_phase(run, key, name, workers=workers, kill=with_kill))
    result.notes += _cpu_notes(result)
    return result


def _cpu_notes(result: ScaleBench) -> list[str]:
    """Whether the workers got the cores the ratio assumes, and their CPU efficiency."""
    by_workers = {phase.workers: phase for phase in result.phases if phase.killed is None}
    one, two = by_workers.get(1), by_workers.get(2)
    if one is None or two is None or not one.crops_per_cpu_s or not two.cpu_cores:
        return []
    notes = [
        f"crops per worker CPU-second, 2 workers / 1 worker: "
        f"{two.crops_per_cpu_s / one.crops_per_cpu_s:.2f} (1.00: no cost of sharing the queue)"
    ]
    cores = two.cpu_cores
    notes.append(
        f"2-worker phase: workers {cores['workers']:.2f} cores busy, broker "
        f"{cores['broker']:.2f}, other processes {cores['others']:.2f}, I/O wait "
        f"{cores['iowait']:.2f}, of {len(os.sched_getaffinity(0))}"
    )
    if cores["others"] >= 0.1 and result.ratio < TARGET:
        notes.append(
            "other processes took CPU the workers needed: the ratio is bounded by the CPU they "
            "got; run again on a quieter machine"
        )
    return notes


@contextmanager
def _database(kind: IngestDatabase) -> Iterator[Callable[[str], str]]:
    """A factory of fresh database URLs, one per phase: SQLite files or PostgreSQL databases."""
    if kind == "postgresql":
        with PostgresCluster() as cluster:
            yield lambda _key: cluster.create_database()
        return
    with tempfile.TemporaryDirectory(prefix="lensflow-bench-scale-db-") as folder:
        yield lambda key: f"sqlite:///{Path(folder) / f'{key}.sqlite3'}"


def _publish(node: RabbitNode, messages: list[bytes]) -> None:
    """Publish every message with QoS 1, as an edge does; return when all are PUBACKed."""
    client = make_client(
        MqttConfig(port=node.mqtt_port, protocol="v311"), client_id="bench-edge", persistent=False
    )
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", node.mqtt_port)
    client.loop_start()
    try:
        infos = [client.publish(TOPIC, message, qos=1) for message in messages]
        for info in infos:
            info.wait_for_publish(timeout=60.0)
        if not all(info.is_published() for info in infos):
            raise BenchError("expected every crop PUBACKed by RabbitMQ within 60 s, some were not")
    finally:
        client.disconnect()
        client.loop_stop()


def _wait_queued(node: RabbitNode, queues: list[str], count: int) -> None:
    """Wait until every queue holds ``count`` messages."""
    deadline = time.monotonic() + 30.0
    depths = [queue_depth(node.amqp_url, queue) for queue in queues]
    while any(depth != count for depth in depths):
        if time.monotonic() > deadline:
            raise BenchError(f"expected {count} crops in each of {queues}, got {depths}")
        time.sleep(_POLL_S)
        depths = [queue_depth(node.amqp_url, queue) for queue in queues]


def _write_pipeline(folder: Path, classifier: Path, *, batch: int) -> Path:
    """One node: the ONNX classifier with one intra-op thread, batched ``batch`` at a time."""
    node = {
        "name": NODE,
        "class": "onnx_classifier",
        "params": {"model": str(classifier.resolve()), "threads": 1},
        "batch": {"max_size": batch, "max_wait_ms": 5},
    }
    path = folder / "pipeline.yaml"
    document = {"version": 1, "name": "bench-scale", "pipeline": [node]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
