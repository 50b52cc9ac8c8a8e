"""One phase of ``lensflow bench scale``: worker processes drain a full queue, then checks.

The phase writes a cloud config for its queue and database, starts the worker processes
(:mod:`lensflow.bench.scale_workers`), optionally SIGKILLs the first one once it has committed
crops, waits until every crop is stored, the queue is empty and the logs are quiet, stops the
rest with SIGTERM, and counts what the database holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pika
import yaml
from sqlalchemy import Engine, text

from lensflow.bench import BenchError
from lensflow.bench.cloud_ingest import TOPIC
from lensflow.bench.scale_workers import (
    CpuSample,
    WorkerProcess,
    broker_pid,
    steady_rate,
    wait_until_up,
)
from lensflow.cloud.storage import create_engine_for, migrate
from lensflow.services.rabbitmq import RabbitNode

BINDING = TOPIC.replace("/", ".")
"""The ``amq.topic`` binding of every phase's queue: each gets a copy of every crop."""
NODE = "imagenet"
"""The pipeline's one node; each crop must have exactly one ``ok`` result of it."""
STARTUP_S = 120.0  # a loaded 2-core machine starts two Python + ONNX Runtime processes slowly
SETTLE_S = 1.5  # no log line for this long, everything stored, queue empty: the phase is over
_POLL_S = 0.2


@dataclass
class Phase:
    """One drain of a full queue by worker processes, and what the database holds after it."""

    name: str
    workers: int
    published: int
    load_avg: float
    window_crops: int = 0
    window_s: float = 0.0
    drain_s: float = 0.0
    by_worker: dict[str, int] = field(default_factory=dict)
    stored_rows: int = 0
    distinct_crop_ids: int = 0
    missing: int = 0
    unexpected: int = 0
    result_rows: int = 0
    crops_without_one_result: int = 0
    results_not_ok: int = 0
    dead_letters: int = 0
    left_in_queue: int = 0
    duplicates_seen: int = 0
    redelivered: int = 0
    killed: str | None = None
    stored_at_kill: int | None = None
    exit_codes: dict[str, int] = field(default_factory=dict)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    """Mean cores from every worker up to every crop stored: busy with the workers, broker,
    bench, others; and idle waiting for I/O (``iowait``)."""
    storage_retries: int = 0
    """Transient storage failures the workers retried (SQLite busy, database down)."""
    crops_per_cpu_s: float = 0.0
    """Crops stored over those the workers' CPU seconds in the same span (their efficiency)."""

    @property
    def per_s(self) -> float:
        """Crops per second while every worker was consuming."""
        return self.window_crops / self.window_s if self.window_s > 0 else 0.0

    def problems(self) -> list[str]:
        """What is wrong with the stored outcome (empty: every crop exactly once)."""
        found = []
        if self.stored_rows != self.published or self.distinct_crop_ids != self.published:
            found.append(
                f"expected {self.published} crop rows with distinct crop_ids, got "
                f"{self.stored_rows} rows, {self.distinct_crop_ids} distinct"
            )
        if self.missing or self.unexpected:
            found.append(f"{self.missing} published crop_ids missing, {self.unexpected} unknown")
        if self.result_rows != self.published or self.crops_without_one_result:
            found.append(
                f"expected one {NODE!r} result per crop ({self.published}), got "
                f"{self.result_rows} rows; {self.crops_without_one_result} crops without one"
            )
        if self.results_not_ok or self.dead_letters:
            found.append(f"{self.results_not_ok} failed results, {self.dead_letters} dead letters")
        if self.left_in_queue:
            found.append(f"{self.left_in_queue} messages left in the queue")
        bad_exits = {name: code for name, code in self.exit_codes.items() if code not in (0, -9)}
        if bad_exits:
            found.append(f"workers exited with {bad_exits} on SIGTERM (expected 0)")
        if self.killed is not None:
            if self.stored_at_kill is None or self.stored_at_kill >= self.published:
                found.append("the kill came after the last crop was stored: raise --crops")
            if not self.redelivered:
                found.append("the killed worker's crops did not come back (no redelivery)")
        return found


@dataclass(frozen=True)
class PhaseSetup:
    """What every phase shares: the broker, the database factory, files and the crops.

    Attributes:
        node: The running RabbitMQ node.
        database_url: A fresh database URL for a phase key.
        folder: Scratch folder (configs, logs, crop stores).
        pipeline: The pipeline YAML every worker runs.
        prefetch: Each worker's AMQP prefetch.
        crop_ids: Every published crop_id.
        pin: Pin worker n to CPU n - 1 (one core per worker, as a CPU limit would).

    """

    node: RabbitNode
    database_url: Callable[[str], str]
    folder: Path
    pipeline: Path
    prefetch: int
    crop_ids: frozenset[str]
    pin: bool = False


def queue_name(key: str) -> str:
    """The quorum queue of a phase."""
    return f"lensflow.bench.scale.{key}"


def queue_depth(amqp_url: str, queue: str) -> int:
    """Ready messages in a queue (not counting those delivered and not yet acknowledged)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        declared = connection.channel().queue_declare(queue=queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def write_config(run: PhaseSetup, key: str, database_url: str) -> Path:
    """The phase's cloud config: its queue and database, JSON logs (the figures' source)."""
    document = {
        "pipeline": str(run.pipeline),
        "database": {"url": database_url},
        "crop_store": str(run.folder / f"crops-{key}"),
        "intake": {
            "type": "amqp",
            "url": run.node.amqp_url,
            "queue": queue_name(key),
            "binding_key": BINDING,
            "prefetch": run.prefetch,
        },
        "logging": {"level": "INFO", "format": "json"},
    }
    path = run.folder / f"cloud-{key}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run_phase(run: PhaseSetup, key: str, name: str, *, workers: int, kill: bool) -> Phase:
    """Drain one queue with ``workers`` worker processes (killing the first one if asked)."""
    url = run.database_url(key)
    migrate(url)  # before the workers, so two of them do not race to create the schema
    config = write_config(run, key, url)
    phase = Phase(name, workers, len(run.crop_ids), load_avg=os.getloadavg()[0])
    cpus = sorted(os.sched_getaffinity(0))
    processes = [
        WorkerProcess(
            f"w{n}",
            config=config,
            log=run.folder / f"{key}-w{n}.log",
            cpu=cpus[(n - 1) % len(cpus)] if run.pin else None,
        )
        for n in range(1, workers + 1)
    ]
    engine = create_engine_for(url)
    try:
        if kill:
            phase.killed = processes[0].name
            phase.stored_at_kill = _kill_mid_run(processes, engine, phase.published)
        _drain(run, key, processes, engine, phase)
        for process in processes:
            phase.exit_codes[process.name] = -9 if process.killed else process.stop()
        phase.left_in_queue = queue_depth(run.node.amqp_url, queue_name(key))
        _check_database(engine, run.crop_ids, phase)
    finally:
        for process in processes:
            if process.alive:
                process.kill()
        engine.dispose()
    _read_logs(phase, processes)
    return phase


def _drain(
    run: PhaseSetup, key: str, processes: list[WorkerProcess], engine: Engine, phase: Phase
) -> None:
    """Wait for the live workers to come up and store every crop; sample the CPU around it."""
    live = [process for process in processes if not process.killed]
    wait_until_up(live, STARTUP_S)
    broker = broker_pid(run.node.base_dir)
    before, stored_before = CpuSample.take(live, broker), _stored(engine)
    after = _wait_settled(
        run, key, processes, engine, phase.published, sample=lambda: CpuSample.take(live, broker)
    )
    phase.cpu_cores = _cores(before, after)
    if after.workers > before.workers:
        crops = phase.published - stored_before
        phase.crops_per_cpu_s = crops / (after.workers - before.workers)


def _read_logs(phase: Phase, processes: list[WorkerProcess]) -> None:
    """The phase's figures from the workers' logs: rate, drain time, commits, redeliveries."""
    logs = [process.read() for process in processes]
    phase.window_crops, phase.window_s = steady_rate([] if phase.killed else logs)
    commits = [commit for log in logs for commit in log.commits]
    ups = [log.up_at for log in logs if log.up_at is not None]
    if commits and ups:
        phase.drain_s = max(commit.at for commit in commits) - min(ups)
    phase.by_worker = {p.name: len(log.stored) for p, log in zip(processes, logs, strict=True)}
    phase.duplicates_seen = sum(commit.outcome == "duplicate" for commit in commits)
    phase.redelivered = sum(commit.redelivered for commit in commits)
    phase.storage_retries = sum(log.storage_retries for log in logs)


def _drained(run: PhaseSetup, key: str, engine: Engine, expected: int) -> bool:
    """Whether every crop is stored and the phase's queue holds no ready message."""
    return _stored(engine) >= expected and not queue_depth(run.node.amqp_url, queue_name(key))


def _stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM crops")).scalar_one())


def _kill_mid_run(processes: list[WorkerProcess], engine: Engine, published: int) -> int:
    """SIGKILL the first worker mid-run, while it holds unacknowledged crops.

    It is killed once it has committed crops and a quarter of all are stored, and the other
    workers consume too (or, if they are slow to start, half of all are stored: a kill after
    the last crop would prove nothing).

    Returns:
        How many crops the database held at the kill.

    """
    victim, others = processes[0], processes[1:]
    wait_until_up([victim], STARTUP_S)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline and victim.alive:
        stored = _stored(engine)
        others_up = all(process.read().up_at is not None for process in others)
        if stored >= published // (4 if others_up else 2) and victim.read().stored:
            break
        time.sleep(0.05)
    victim.kill()
    return _stored(engine)


def _cores(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Mean cores busy between two samples: workers, broker, this process, everything else."""
    wall = after.at - before.at
    if wall <= 0:
        return {}
    used = {
        "workers": after.workers - before.workers,
        "broker": after.broker - before.broker,
        "bench": after.bench - before.bench,
    }
    used["others"] = max(0.0, after.machine - before.machine - sum(used.values()))
    used["iowait"] = after.iowait - before.iowait  # idle with I/O outstanding, machine-wide
    return {part: seconds / wall for part, seconds in used.items()}


def _wait_settled(
    run: PhaseSetup,
    key: str,
    processes: list[WorkerProcess],
    engine: Engine,
    expected: int,
    *,
    sample: Callable[[], CpuSample],
) -> CpuSample:
    """Wait until every crop is stored, the queue is empty and no worker logs for a while.

    Returns:
        The CPU sample ``sample`` took when the database first held every crop.

    Raises:
        BenchError: If that does not happen in time, or every worker died.

    """
    deadline = time.monotonic() + 60.0 + expected * 0.2
    sizes, quiet_since = [-1], time.monotonic()
    all_stored: CpuSample | None = None
    while True:
        now_sizes = [process.log_size() for process in processes]
        if now_sizes != sizes:
            sizes, quiet_since = now_sizes, time.monotonic()
        if all_stored is None and _stored(engine) >= expected:
            all_stored = sample()
        quiet = time.monotonic() - quiet_since >= SETTLE_S
        if all_stored is not None and quiet and _drained(run, key, engine, expected):
            return all_stored
        if not any(process.alive for process in processes):
            raise BenchError(f"every worker of phase {key!r} exited before the queue drained")
        if time.monotonic() > deadline:
            raise BenchError(
                f"expected {expected} crops stored in phase {key!r} in time, got {_stored(engine)}"
            )
        time.sleep(_POLL_S)


def _check_database(engine: Engine, crop_ids: frozenset[str], phase: Phase) -> None:
    """Count crops, distinct ids, results per crop, failures and dead letters."""
    per_crop = (
        "SELECT count(*) FROM (SELECT c.id FROM crops c LEFT JOIN classifier_results r "
        "ON r.crop_pk = c.id AND r.node = :node AND r.status = 'ok' "
        "GROUP BY c.id HAVING count(r.id) != 1) AS wrong"
    )
    with engine.connect() as connection:
        stored = [row[0] for row in connection.execute(text("SELECT crop_id FROM crops"))]
        sql = connection.execute
        phase.result_rows = int(sql(text("SELECT count(*) FROM classifier_results")).one()[0])
        phase.crops_without_one_result = int(sql(text(per_crop), {"node": NODE}).one()[0])
        phase.results_not_ok = int(
            sql(text("SELECT count(*) FROM classifier_results WHERE status != 'ok'")).one()[0]
        )
        phase.dead_letters = int(sql(text("SELECT count(*) FROM dead_letters")).one()[0])
    phase.stored_rows, phase.distinct_crop_ids = len(stored), len(set(stored))
    phase.missing = len(crop_ids - set(stored))
    phase.unexpected = len(set(stored) - crop_ids)
