"""The worker with ``runtime: triton``: the real command, a real Triton, a restart losing nothing.

A ``lensflow cloud worker`` child process consumes crops from a private mosquitto, runs a DAG
whose ``vehicle_type`` node (real EfficientNet-Lite0 weights) is served by the real Triton
server bundled with nvidia-pytriton, and stores into SQLite. Triton is SIGKILLed while crops
flow and started again: every crop is stored once, none as a dead letter or with an error
result, and the stored results are those of the in-worker ONNX Runtime on the same JPEGs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import create_engine, text

from lensflow.services.mosquitto import MosquittoBroker
from lensflow.services.triton import TritonServer
from lensflow.shared.classifiers.vehicle_type import VehicleType, VehicleTypeParams
from lensflow.shared.images import decode_image
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.triton import serving
from tests.support.worker import (
    CLI,
    ROOT,
    TOPIC,
    crop_counts,
    dead_letter_count,
    log_lines,
    mqtt_intake,
    publish,
    sample_crops,
    write_cloud_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CROPS = 48
MODEL = "efficientnet-lite0"
STARTUP_S = 60.0


@pytest.fixture
def triton(effnet_features_onnx: Path, tmp_path: Path) -> Iterator[TritonServer]:
    with serving([(MODEL, effnet_features_onnx)], tmp_path / "triton") as server:
        yield server


def write_triton_pipeline(folder: Path, *, url: str) -> None:
    document = {
        "version": 1,
        "name": "triton-test",
        "pipeline": [
            {"name": "object_detection", "class": "edge_detection"},
            {
                "name": "vehicle",
                "class": "vehicle_type",
                "depends_on": "object_detection",
                "params": {"runtime": "triton", "triton": {"url": url, "model": MODEL}},
                "batch": {"max_size": 8, "max_wait_ms": 20},
            },
        ],
    }
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def stored_results(db_url: str) -> dict[str, tuple[str, str, float | None, dict[str, object]]]:
    """crop_id -> (status, label, score, payload) of the vehicle node."""
    engine = create_engine(db_url)
    query = text(
        "SELECT c.crop_id, r.status, r.label, r.score, r.payload FROM classifier_results r "
        "JOIN crops c ON c.id = r.crop_pk WHERE r.node = 'vehicle'"
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    finally:
        engine.dispose()
    found = {}
    for crop_id, status, label, score, payload in rows:
        document = json.loads(payload) if isinstance(payload, str) else payload
        found[crop_id] = (status, label, score, document)
    return found


def test_a_triton_restart_mid_run_loses_nothing_and_results_equal_the_local_runtime(
    mosquitto: MosquittoBroker,  # noqa: F811
    triton: TritonServer,
    effnet_features_onnx: Path,
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'lensflow.sqlite3'}"
    write_triton_pipeline(tmp_path, url=triton.grpc_url)
    intake = mqtt_intake(mosquitto.port, client_id="worker-triton", window=16)
    config = write_cloud_config(tmp_path, db_url=db_url, intake=intake)
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)  # the shipped plugins only: the real vehicle_type
    try:
        subscribed = wait_for(
            lambda: bool(log_lines(log, "mqtt subscribed")) or worker.poll() is not None,
            timeout_s=STARTUP_S,
        )
        assert subscribed and worker.poll() is None, log.read_text(errors="replace")[-3000:]
        crops = sample_crops(CROPS, prefix="triton")
        # given a first part stored through Triton
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops[:16]])
        assert wait_for(lambda: crop_counts(db_url)[1] >= 8, timeout_s=60)
        # when Triton is killed while the rest arrives, and started again a little later
        triton.kill()
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops[16:]])
        assert wait_for(
            lambda: bool(log_lines(log, "inference service unavailable")), timeout_s=30
        ), log.read_text(errors="replace")[-3000:]
        held = crop_counts(db_url)[1]
        triton.start()
        # then every crop is stored once, after the outage, with no dead letter
        done = wait_for(lambda: crop_counts(db_url)[1] >= CROPS, timeout_s=120, interval_s=0.2)
        assert done, log.read_text(errors="replace")[-3000:]
    finally:
        _stop(worker)
    assert held < CROPS  # the outage held crops back
    assert crop_counts(db_url) == (CROPS, CROPS)
    assert dead_letter_count(db_url) == 0
    results = stored_results(db_url)
    assert {status for status, *_ in results.values()} == {"ok"}
    # and the results are the in-worker runtime's on the same JPEGs
    local = VehicleType(VehicleTypeParams(model=str(effnet_features_onnx)))
    images = [decode_image(crop.jpeg) for crop in crops]
    expected = local.process_batch(images, [{}] * len(images))
    for crop, want in zip(crops, expected, strict=True):
        _, _, _, payload = results[crop.crop_id]
        assert payload["type"] == want["type"], crop.crop_id
        assert payload["top_class"] == want["top_class"], crop.crop_id
        assert np.isclose(payload["score"], want["score"], atol=1e-4), crop.crop_id


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", CLI, "cloud", "worker", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
