"""An inference service outage holds the batch: no error result, no dead letter, no ack.

A node whose inference server is down raises ServiceUnavailableError; the worker waits for it
with backoff and runs the same batch again, on a real mosquitto and a SQLite file. A worker
stopped during the outage acknowledges nothing, so the broker delivers the crops again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lensflow.cloud.storage import ResultStore, create_engine_for
from lensflow.cloud.worker import Worker
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.images import decode_image
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.plugins import brightness_label
from tests.support.worker import (
    TOPIC,
    SampleCrop,
    dead_letter_count,
    mqtt_intake,
    publish,
    running_worker,
    sample_crops,
    write_cloud_config,
)

pytestmark = pytest.mark.integration


def write_outage_pipeline(folder: Path, *, unavailable_calls: int) -> None:
    """edge_detection -> remote (down for its first ``unavailable_calls`` calls)."""
    document = {
        "version": 1,
        "name": "outage-test",
        "pipeline": [
            {"name": "object_detection", "class": "edge_detection"},
            {
                "name": "remote",
                "class": "remote_brightness",
                "depends_on": "object_detection",
                "params": {"unavailable_calls": unavailable_calls},
                "batch": {"max_size": 8, "max_wait_ms": 20},
            },
        ],
    }
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def metric(worker: Worker, name: str) -> float:
    return worker.metrics.registry.get_sample_value(name) or 0.0


def assert_stored_once_with_good_results(db_url: str, crops: list[SampleCrop]) -> None:
    """Each crop is one row whose ``remote`` result is the server's answer for its pixels."""
    store = ResultStore(create_engine_for(db_url))
    try:
        assert store.count_crops() == len(crops)
        for crop in crops:
            row = store.get_crop(crop.crop_id)
            assert row is not None, crop.crop_id
            results = {result.node: result for result in row.results}
            assert results["remote"].status == "ok", results["remote"]
            expected = brightness_label(decode_image(crop.jpeg))
            assert results["remote"].label == expected["label"], crop.crop_id
    finally:
        store.engine.dispose()


def test_crops_wait_for_the_service_and_are_stored_once_with_its_answer(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose remote node's server refuses its first 3 calls
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    write_outage_pipeline(tmp_path, unavailable_calls=3)
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(mosquitto.port, client_id="w-svc")
    )
    crops = sample_crops(6)

    # when crops arrive during the outage
    with running_worker(config, registry) as worker:
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        assert wait_for(lambda: _stored(db_url) == len(crops), timeout_s=30)

        # then the batch was retried while the server was down, in one outage
        assert metric(worker, "lensflow_worker_service_retries_total") == 3
        assert metric(worker, "lensflow_worker_service_outages_total") == 1

    # and every crop is stored once, with the server's answer, nothing dead-lettered
    assert_stored_once_with_good_results(db_url, crops)
    assert dead_letter_count(db_url) == 0


def test_a_worker_stopped_during_an_outage_acks_nothing(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose remote node's server stays down
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    write_outage_pipeline(tmp_path, unavailable_calls=1_000_000)
    intake = mqtt_intake(mosquitto.port, client_id="w-svc-stop")
    config = write_cloud_config(tmp_path, db_url=db_url, intake=intake)
    crops = sample_crops(4)

    # when crops arrive and the worker is stopped while it waits for the server
    with running_worker(config, registry) as worker:
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        retries = "lensflow_worker_service_retries_total"
        assert wait_for(lambda: metric(worker, retries) >= 2, timeout_s=15)

    # then nothing was stored or dead-lettered
    assert _stored(db_url) == 0
    assert dead_letter_count(db_url) == 0

    # and, nothing having been acknowledged, the broker delivers every crop again to the next
    # worker of the same session (its own folder and database, its server up)
    later = tmp_path / "later"
    later.mkdir()
    later_url = f"sqlite:///{later / 'db.sqlite3'}"
    write_outage_pipeline(later, unavailable_calls=0)
    with running_worker(write_cloud_config(later, db_url=later_url, intake=intake), registry):
        assert wait_for(lambda: _stored(later_url) == len(crops), timeout_s=30)
    assert_stored_once_with_good_results(later_url, crops)
    assert dead_letter_count(later_url) == 0


def _stored(db_url: str) -> int:
    store = ResultStore(create_engine_for(db_url))
    try:
        return store.count_crops()
    finally:
        store.engine.dispose()
