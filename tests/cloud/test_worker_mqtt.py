"""Worker specs on a real mosquitto: crops become rows and stored JPEGs, conditional nodes run
or skip per crop, re-deliveries are no-ops, invalid messages become dead letters.

The worker runs in a thread of the test process with the real MQTT intake; the database is
SQLite, and PostgreSQL where ``db_url`` is used.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from lensflow.cloud.storage import FolderCropStore, ResultStore, create_engine_for, session_factory
from lensflow.cloud.storage.models import DeadLetter
from lensflow.cloud.worker import Worker
from lensflow.services.mosquitto import MosquittoBroker, MosquittoConfig
from lensflow.services.process import free_port
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config import load_cloud_config
from lensflow.shared.protocol import SCHEMA_VERSION, crops_topic, encode_crop, new_crop_header
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.protocol_samples import frame, header_doc, make_header
from tests.support.worker import (
    PROVENANCE,
    TOPIC,
    mqtt_intake,
    publish,
    running_worker,
    sample_crops,
    write_cloud_config,
)

pytestmark = pytest.mark.integration


def stored_store(db_url: str) -> ResultStore:
    return ResultStore(create_engine_for(db_url))


def test_published_crops_become_rows_and_jpegs_with_conditional_nodes(
    mosquitto: MosquittoBroker,  # noqa: F811
    db_url: str,
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker on the DAG edge_detection -> tshirt_color (people) | car_make (cars)
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(mosquitto.port, client_id="w-rows")
    )
    crops = sample_crops(12)

    # when an edge publishes 12 real crops (6 people, 6 cars) over MQTT
    with running_worker(config, registry):
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        store = stored_store(db_url)
        assert wait_for(lambda: store.count_crops() == len(crops), timeout_s=20)

    # then each crop is one row whose results ran or skipped the nodes by its class
    jpegs = FolderCropStore(tmp_path / "crops")
    for crop in crops:
        row = store.get_crop(crop.crop_id)
        assert row is not None, crop.crop_id
        assert (row.class_name, row.pipeline_name) == (crop.class_name, "worker-test")
        statuses = {result.node: result.status for result in row.results}
        expected = ("ok", "skipped") if crop.class_name == "person" else ("skipped", "ok")
        assert statuses == {
            "object_detection": "ok",
            "tshirt_color": expected[0],
            "car_make": expected[1],
        }, crop.crop_id
        labels = {result.node: result.label for result in row.results if result.status == "ok"}
        assert labels.get("tshirt_color" if crop.class_name == "person" else "car_make")
        # and the crop's JPEG is in the crop store under its sha256
        assert jpegs.get(crop.sha256) == crop.jpeg
    store.engine.dispose()


def test_nodes_run_on_batches_of_crops(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose car_make node batches up to 8 crops for 20 ms
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(mosquitto.port, client_id="w-batch")
    )
    crops = sample_crops(32)

    # when 32 crops arrive at once
    with running_worker(config, registry) as worker:
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        store = stored_store(db_url)
        assert wait_for(lambda: store.count_crops() == len(crops), timeout_s=20)
        batches = worker.metrics.batch_size.collect()[0].samples

    # then the DAG ran on batches, not one crop at a time
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count < len(crops), f"expected batches, got {count} for {len(crops)} crops"
    sizes = [r.batch_size for c in crops if (row := store.get_crop(c.crop_id)) for r in row.results]
    assert max(sizes) > 1
    store.engine.dispose()


def test_a_redelivered_crop_is_stored_once(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a crop that was already stored
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(mosquitto.port, client_id="w-dup")
    )
    crop = sample_crops(1)[0]
    with running_worker(config, registry) as worker:
        publish(mosquitto.port, [(TOPIC, crop.message)])
        store = stored_store(db_url)
        assert wait_for(lambda: store.count_crops() == 1, timeout_s=10)

        # when the same crop arrives again (an edge re-send, or a broker re-delivery)
        publish(mosquitto.port, [(TOPIC, crop.message)])
        assert wait_for(lambda: outcome_count(worker, "duplicate") == 1, timeout_s=10)

    # then it is still one row, and the second delivery was acknowledged as a no-op
    assert store.count_crops() == 1
    assert outcome_count(worker, "stored") == 1
    store.engine.dispose()


def _bad_jpeg_message() -> bytes:
    """A well-formed envelope whose payload starts like a JPEG but does not decode."""
    jpeg = b"\xff\xd8" + b"not really a jpeg" * 20
    header = new_crop_header(
        jpeg=jpeg,
        site="site1",
        camera="cam1",
        captured_at=make_header().captured_at,
        detection=make_header().detection,
        provenance=PROVENANCE,
        crop_id="bad-jpeg",
    )
    return encode_crop(header, jpeg)


def _wrong_version_message() -> bytes:
    doc = header_doc() | {"schema_version": SCHEMA_VERSION + 1, "site": "site1", "camera": "cam1"}
    return frame(json.dumps(doc).encode(), b"\xff\xd8\xff\xe0")


MAX_BYTES = 100_000
INVALID = [
    # (case, topic, payload, words the dead letter's reason must contain)
    ("garbage bytes", TOPIC, b"\x00\x01garbage\xff" * 10, "expected magic"),
    ("unknown schema version", TOPIC, _wrong_version_message(), "schema_version"),
    ("oversized", TOPIC, b"LFC\x01" + bytes(MAX_BYTES), f"max_message_bytes={MAX_BYTES}"),
    ("JPEG that does not decode", TOPIC, _bad_jpeg_message(), "with a readable size"),
    ("crop on another camera's topic", crops_topic(site="s2", camera="c2"), None, "topic"),
]


def test_invalid_messages_become_dead_letters_and_the_worker_goes_on(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker that accepts messages of up to 100 kB
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path,
        db_url=db_url,
        intake=mqtt_intake(mosquitto.port, client_id="w-dead"),
        max_message_bytes=MAX_BYTES,
    )
    good = sample_crops(2)
    messages = [(topic, payload or good[0].message) for _, topic, payload, _ in INVALID]

    # when invalid messages arrive between two valid crops
    with running_worker(config, registry):
        publish(mosquitto.port, [(TOPIC, good[1].message), *messages, (TOPIC, good[0].message)])
        store = stored_store(db_url)
        assert wait_for(lambda: store.count_crops() == 2, timeout_s=10)
        assert wait_for(lambda: len(dead_letters(store)) == len(INVALID), timeout_s=10)

    # then each became a dead letter saying what was wrong, and the valid crops were stored
    letters = dead_letters(store)
    for (case, topic, _, words), letter in zip(INVALID, letters, strict=True):
        assert (letter.topic, letter.source) == (topic, "mqtt"), case
        assert words in letter.reason, f"{case}: {letter.reason}"

    # and every one was acknowledged: a restarted worker gets none of them again
    with running_worker(config, registry):
        publish(mosquitto.port, [(TOPIC, sample_crops(3)[2].message)])
        assert wait_for(lambda: store.count_crops() == 3, timeout_s=10)
    assert len(dead_letters(store)) == len(INVALID)
    store.engine.dispose()


def test_storage_outage_holds_the_ack_and_the_crop_is_stored_when_it_ends(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose crop folder cannot be created (a file sits where it should be)
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(mosquitto.port, client_id="w-outage")
    )
    (tmp_path / "crops").write_bytes(b"in the way")
    crop = sample_crops(1)[0]

    with running_worker(config, registry) as worker:
        # when a crop arrives, then the worker retries instead of losing or dead-lettering it
        publish(mosquitto.port, [(TOPIC, crop.message)])
        retries = "lensflow_worker_storage_retries_total"
        assert wait_for(
            lambda: (worker.metrics.registry.get_sample_value(retries) or 0) >= 2, timeout_s=10
        )
        store = stored_store(db_url)
        assert store.count_crops() == 0

        # and once the folder can be made, the crop is stored
        (tmp_path / "crops").unlink()
        assert wait_for(lambda: store.count_crops() == 1, timeout_s=15)
    assert FolderCropStore(tmp_path / "crops").exists(crop.sha256)
    assert dead_letters(store) == []
    store.engine.dispose()


def test_the_brokers_dropped_messages_are_exported(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    # given a broker that queues at most 5 messages for an absent client
    data = (tmp_path / "mosquitto").resolve()
    broker = MosquittoBroker(
        data,
        config=MosquittoConfig(
            port=free_port(), data_dir=data, max_queued_messages=5, run_as_root=os.geteuid() == 0
        ),
    )
    broker.start()
    try:
        db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        intake = mqtt_intake(broker.port, client_id="w-drops", window=4)
        config = write_cloud_config(tmp_path, db_url=db_url, intake=intake)
        with running_worker(config, registry):
            pass  # the session now exists; the worker is away

        # when 20 crops are published while the worker is away
        publish(broker.port, [(TOPIC, crop.message) for crop in sample_crops(20)])

        # then the worker, back, exports the broker's count of what it dropped
        with running_worker(config, registry) as worker:
            dropped = "lensflow_broker_dropped_messages"
            assert wait_for(
                lambda: (worker.metrics.registry.get_sample_value(dropped) or 0) >= 15,
                timeout_s=10,
            )
    finally:
        broker.kill()


def test_a_batch_larger_than_the_in_flight_window_is_cut_to_it(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    # given a pipeline batching 8 crops and an intake holding at most 4 unacked
    config = write_cloud_config(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        intake=mqtt_intake(1883, client_id="w-window", window=4),
    )

    # when the worker is built (not started), then its batches are of 4
    worker = Worker(load_cloud_config(config), registry=registry)
    assert worker.batcher.max_batch == 4
    worker.engine.dispose()


def dead_letters(store: ResultStore) -> list[DeadLetter]:
    with session_factory(store.engine)() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def outcome_count(worker: Worker, outcome: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "lensflow_worker_messages_total", {"outcome": outcome}
    )
    return value or 0.0


def test_a_crop_the_database_refuses_is_dead_lettered_and_the_rest_of_its_batch_stored(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    registry: PluginRegistry,
) -> None:
    # given a worker whose database refuses one crop_id (a trigger: a real constraint failure)
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_cloud_config(
        tmp_path, db_url=db_url, intake=mqtt_intake(mosquitto.port, client_id="w-refuse")
    )
    crops = sample_crops(8)
    refused = crops[3].crop_id
    with running_worker(config, registry) as worker:
        with sqlite3.connect(tmp_path / "db.sqlite3") as connection:
            connection.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON crops WHEN NEW.crop_id = '{refused}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
            )

        # when its batch arrives at once
        publish(mosquitto.port, [(TOPIC, crop.message) for crop in crops])
        store = stored_store(db_url)
        assert wait_for(lambda: len(dead_letters(store)) == 1, timeout_s=20)
        assert wait_for(lambda: store.count_crops() == len(crops) - 1, timeout_s=20)
        # acked (and counted) just after the commit the row count sees
        stored = len(crops) - 1
        assert wait_for(lambda: outcome_count(worker, "stored") >= stored, timeout_s=10)
        assert outcome_count(worker, "stored") == stored

    # then only that crop is a dead letter, with the database's reason
    (letter,) = dead_letters(store)
    assert "could not store the crop" in letter.reason
    assert "refused by a test trigger" in letter.reason
    assert store.get_crop(refused) is None
    store.engine.dispose()
