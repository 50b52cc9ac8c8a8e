"""MQTT intake crash specs: worker processes SIGKILLed mid-batch, a broker restarted, and
every crop still stored exactly once.

The worker is the real command (``lensflow cloud worker``) in a child process, on a private
mosquitto (``max_inflight_messages 100``) and a SQLite file. Its pipeline has a slow node
(25 ms a crop), so a batch of 8 takes about 200 ms and a kill lands inside one.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lensflow.services.mosquitto import MosquittoBroker
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.worker import (
    TOPIC,
    crop_counts,
    log_lines,
    mqtt_intake,
    publish,
    sample_crops,
    start_worker,
    write_cloud_config,
    write_pipeline,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CROPS = 60
STARTUP_S = 60.0  # generous: a loaded CI machine starts Python processes slowly


class Workers:
    """Worker processes started by a test; every one still alive is killed at the end."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.config, self.folder = config, folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> Path:
        """Start one and wait until it is subscribed; return its log file."""
        log = self.folder / f"worker-{len(self.processes)}.log"
        process = start_worker(self.config, log)
        self.processes.append(process)
        subscribed = wait_for(
            lambda: bool(log_lines(log, "mqtt subscribed")) or process.poll() is not None,
            timeout_s=STARTUP_S,
        )
        assert subscribed and process.poll() is None, log.read_text(errors="replace")[-3000:]
        return log

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lensflow.sqlite3'}"


def make_workers(tmp_path: Path, db_url: str, port: int, protocol: str) -> Workers:
    write_pipeline(tmp_path, slow_ms=25)
    intake = mqtt_intake(port, client_id=f"worker-{protocol}", protocol=protocol)
    return Workers(write_cloud_config(tmp_path, db_url=db_url, intake=intake), tmp_path)


@pytest.fixture(params=["v5", "v311"])
def workers(
    request: pytest.FixtureRequest,
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    db_file: str,
) -> Iterator[Workers]:
    """Worker processes on MQTT 5 and on MQTT 3.1.1 (both are supported; see intake_mqtt)."""
    workers = make_workers(tmp_path, db_file, mosquitto.port, request.param)
    yield workers
    workers.kill_all()


def test_a_worker_sigkilled_mid_batch_and_restarted_stores_every_crop_once(
    mosquitto: MosquittoBroker,  # noqa: F811
    db_file: str,
    workers: Workers,
) -> None:
    # given a worker with a persistent session, and 60 crops in flight to it
    workers.start()
    crops = sample_crops(CROPS)
    publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])

    # when it is SIGKILLed mid-batch (some crops stored, most not yet acknowledged)
    assert wait_for(lambda: crop_counts(db_file)[0] >= 12, timeout_s=STARTUP_S)
    first = workers.processes[0]
    first.send_signal(signal.SIGKILL)
    first.wait()
    stored_at_kill = crop_counts(db_file)[0]
    assert 0 < stored_at_kill < CROPS, f"the kill missed the batches: {stored_at_kill}"

    # and restarted with the same client id
    log = workers.start()

    # then every crop is stored exactly once, the unacked ones having come back
    assert wait_for(lambda: crop_counts(db_file)[0] >= CROPS, timeout_s=STARTUP_S)
    second = workers.processes[1]
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=45) == 0, "SIGTERM should stop the worker cleanly"
    assert crop_counts(db_file) == (CROPS, CROPS)
    assert log_lines(log, "redelivered=True"), "expected re-deliveries after the kill"


def test_crops_queued_for_a_stopped_worker_survive_a_broker_restart(
    mosquitto: MosquittoBroker,  # noqa: F811
    db_file: str,
    workers: Workers,
) -> None:
    # given a worker's session, created and then left (the worker stopped); on MQTT 5 this
    # fails if the session's connection began with clean_start=1 (mosquitto 2.0.11 does not
    # persist such a session)
    workers.start()
    workers.processes[0].send_signal(signal.SIGTERM)
    assert workers.processes[0].wait(timeout=45) == 0

    # when crops are queued for it and the broker restarts (SIGTERM: persistence saved)
    publish(mosquitto.port, [(TOPIC, crop.message) for crop in sample_crops(30)])
    mosquitto.restart()

    # then the worker, back, stores every one of them exactly once
    log = workers.start()
    assert wait_for(lambda: crop_counts(db_file)[0] >= 30, timeout_s=STARTUP_S)
    assert crop_counts(db_file) == (30, 30)
    assert log_lines(log, "session_present=True")


def test_a_broker_restart_under_a_busy_worker_loses_no_crop(
    mosquitto: MosquittoBroker,  # noqa: F811
    db_file: str,
    workers: Workers,
) -> None:
    # given a worker busy with 60 crops
    log = workers.start()
    publish(mosquitto.port, [(TOPIC, crop.message) for crop in sample_crops(CROPS)])
    assert wait_for(lambda: crop_counts(db_file)[0] >= 8, timeout_s=STARTUP_S)

    # when the broker restarts under it
    mosquitto.restart()

    # then the worker reconnects to its session and stores every crop exactly once
    assert wait_for(lambda: crop_counts(db_file)[0] >= CROPS, timeout_s=STARTUP_S)
    assert crop_counts(db_file) == (CROPS, CROPS)
    assert log_lines(log, "session_present=True"), "expected the session back"
