"""Storage specs: migrations, idempotent crop writes, dead letters, edge status.

Database tests run on SQLite and on a real PostgreSQL (``db_url`` is parametrised); the crop
store's specs are in test_crop_store.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select

from lensflow.cloud.storage import (
    ResultStore,
    StorageError,
    create_engine_for,
    migrate,
)
from lensflow.cloud.storage.db import alembic_config
from lensflow.cloud.storage.models import Base, Camera, ClassifierResult
from lensflow.cloud.storage.repository import DEAD_LETTER_HEAD, DEAD_LETTER_MAX_PAYLOAD
from lensflow.shared.dag.engine import NodeResult
from lensflow.shared.protocol import StatusMessage
from tests.support.protocol_samples import CAPTURED, make_header, real_jpeg
from tests.support.s3 import CropBackend, crop_backend, moto_s3, s3_env  # noqa: F401

TABLES = {
    "alembic_version", "cameras", "classifier_results", "crop_embeddings", "crop_reviews", "crops",
    "dead_letters", "edge_config_assignments", "edge_config_versions", "edge_heartbeats",
    "edges", "human_labels", "heads", "label_events", "label_schema_versions", "model_bundles",
    "pipeline_versions", "replay_jobs", "rollout_edges", "rollouts", "workers",
}  # fmt: skip

RESULTS = {
    "color": NodeResult(
        node="color",
        status="ok",
        output={"color": "red", "confidence": np.float32(0.75), "hist": np.arange(3)},
        duration_ms=4.5,
        batch_size=8,
        plugin="tests.support.plugins:Color",
        version="1.2",
    ),
    "plate": NodeResult(
        node="plate", status="skipped", reason="condition false: 'car' not in classes"
    ),
    "make": NodeResult(node="make", status="error", reason="RuntimeError: boom", plugin="Make"),
}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> ResultStore:
    return ResultStore(engine)


def save(store: ResultStore, crop_id: str = "crop-0001", **header_overrides: object) -> bool:
    header = make_header(crop_id=crop_id, **header_overrides)
    return store.save_crop_results(
        header, jpeg_size=len(real_jpeg()), results=RESULTS, pipeline="default"
    )


# --- migrations ---------------------------------------------------------------------------


def test_migrate_creates_every_table_and_is_idempotent(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # already at head: nothing to do

    engine = create_engine_for(db_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()


def test_concurrent_migrations_of_a_new_database_both_succeed(db_url: str) -> None:
    # two workers starting at once on an empty database
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        try:
            migrate(db_url)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []


def test_downgrade_to_base_then_upgrade_round_trips(engine: Engine) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    migrate(engine)

    assert set(inspect(engine).get_table_names()) == TABLES


def test_models_and_migrations_agree(engine: Engine) -> None:
    # given a database migrated to head, when alembic compares it with the models
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)

    # then autogenerate would write an empty migration
    assert diffs == []


# --- crops and results ----------------------------------------------------------------------


def test_saving_a_crop_stores_its_header_and_every_node_result(store: ResultStore) -> None:
    assert save(store) is True

    crop = store.get_crop("crop-0001")
    assert crop is not None
    assert (crop.site, crop.camera, crop.class_name, crop.track_id) == (
        "plant-a",
        "cam01",
        "car",
        7,
    )
    assert (crop.box_x1, crop.box_y1, crop.box_x2, crop.box_y2) == (10, 20, 110, 220)
    assert crop.crop_box == [0, 0, 130, 240]
    assert crop.jpeg_sha256 == hashlib.sha256(real_jpeg()).hexdigest()
    assert crop.jpeg_size == len(real_jpeg())
    assert crop.pipeline_name == "default"
    results = {r.node: r for r in crop.results}
    assert set(results) == {"color", "plate", "make"}
    # the "color" key is the label, "confidence" the score; numpy values become plain JSON
    color = results["color"]
    assert (color.status, color.label, color.score) == ("ok", "red", 0.75)
    assert color.payload == {"color": "red", "confidence": 0.75, "hist": [0, 1, 2]}
    assert (color.plugin, color.plugin_version, color.batch_size) == (
        "tests.support.plugins:Color",
        "1.2",
        8,
    )
    assert (results["plate"].status, results["plate"].label) == ("skipped", None)
    assert results["make"].reason == "RuntimeError: boom"


def test_redelivered_crop_is_a_no_op(store: ResultStore) -> None:
    assert save(store) is True

    # when the same crop_id arrives again (at-least-once intake)
    assert save(store) is False

    assert store.count_crops() == 1
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ClassifierResult)) == 3


def test_concurrent_saves_of_one_crop_store_one_row(store: ResultStore) -> None:
    threads_n = 4
    barrier = threading.Barrier(threads_n)
    outcomes: list[bool | BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            outcomes.append(save(store))
        except BaseException as err:
            outcomes.append(err)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes, key=str) == [False] * (threads_n - 1) + [True]
    assert store.count_crops() == 1


def test_a_result_filed_under_another_node_is_refused(store: ResultStore) -> None:
    with pytest.raises(StorageError, match="expected the result filed under node 'b'"):
        store.save_crop_results(
            make_header(),
            jpeg_size=1,
            results={"b": NodeResult(node="a", status="ok")},
            pipeline="default",
        )
    assert store.count_crops() == 0


def test_text_with_nul_characters_is_stored_on_every_dialect(store: ResultStore) -> None:
    result = NodeResult(node="ocr", status="ok", output={"label": "AB\x00C", "score": float("nan")})

    store.save_crop_results(
        make_header(attributes={"note": "x\x00y"}),
        jpeg_size=1,
        results={"ocr": result},
        pipeline="default",
    )

    crop = store.get_crop("crop-0001")
    assert crop is not None
    assert crop.attributes == {"note": "x\ufffdy"}
    assert (crop.results[0].label, crop.results[0].score) == ("AB\ufffdC", None)
    assert crop.results[0].payload == {"label": "AB\ufffdC", "score": None}


def test_cameras_record_first_and_last_capture(store: ResultStore) -> None:
    save(store, "c-2", captured_at=CAPTURED)
    save(store, "c-1", captured_at=CAPTURED - timedelta(hours=1))
    save(store, "c-3", captured_at=CAPTURED + timedelta(hours=1))

    with store.engine.connect() as connection:
        cameras = connection.execute(select(Camera.name, Camera.first_seen, Camera.last_seen)).all()
    assert [tuple(c) for c in cameras] == [
        ("cam01", CAPTURED - timedelta(hours=1), CAPTURED + timedelta(hours=1))
    ]


# --- timestamps -----------------------------------------------------------------------------


def test_timestamps_come_back_timezone_aware_utc(store: ResultStore) -> None:
    received = datetime(2024, 5, 1, 14, 0, 5, 250, tzinfo=timezone(timedelta(hours=2)))
    store.save_crop_results(
        make_header(), jpeg_size=1, results={}, pipeline="default", received_at=received
    )

    crop = store.get_crop("crop-0001")
    assert crop is not None
    # the same instants, expressed in UTC, to the microsecond
    assert (crop.captured_at, crop.received_at) == (CAPTURED, received)
    assert crop.captured_at.tzinfo is UTC
    assert crop.received_at.tzinfo is UTC
    assert crop.received_at.hour == 12


def test_naive_timestamps_are_refused(store: ResultStore) -> None:
    with pytest.raises(StorageError, match="expected a timezone-aware datetime, got naive"):
        store.save_dead_letter(
            source="mqtt", topic="t", reason="r", payload=b"", received_at=datetime(2024, 1, 1)
        )


# --- dead letters and edges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kept", "truncated"),
    [
        (100, 100, False),  # small: kept whole
        (DEAD_LETTER_MAX_PAYLOAD, DEAD_LETTER_MAX_PAYLOAD, False),  # at the limit: kept whole
        (DEAD_LETTER_MAX_PAYLOAD + 1, DEAD_LETTER_HEAD, True),  # too big: only its head
    ],
)
def test_dead_letter_keeps_reason_size_hash_and_payload(
    store: ResultStore, size: int, kept: int, truncated: bool
) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)

    letter_id = store.save_dead_letter(
        source="mqtt", topic="lensflow/v1/a/b/crops", reason="bad magic", payload=payload
    )

    letter = store.get_dead_letter(letter_id)
    assert letter is not None
    assert (letter.source, letter.topic, letter.reason) == (
        "mqtt",
        "lensflow/v1/a/b/crops",
        "bad magic",
    )
    assert (letter.payload_size, letter.payload_truncated) == (size, truncated)
    assert letter.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert letter.payload == payload[:kept]
    assert letter.received_at.tzinfo is not None


def test_edge_status_is_upserted_latest_arrival_wins(store: ResultStore) -> None:
    online = StatusMessage(
        state="online",
        agent_version="0.1.0",
        applied_config_hash="sha256:1",
        counters={"crops_sent": 5},
        timestamp=CAPTURED,
    )
    # the last will carries the connect time: older than the online status it follows
    will = StatusMessage(state="offline", agent_version="0.1.0", timestamp=CAPTURED - timedelta(1))

    store.upsert_edge_status(site="plant-a", agent_id="agent-1", status=online)
    store.upsert_edge_status(site="plant-a", agent_id="agent-1", status=will)

    edge = store.get_edge(site="plant-a", agent_id="agent-1")
    assert edge is not None
    assert (edge.state, edge.applied_config_hash, edge.counters) == ("offline", None, {})
    assert edge.last_status["state"] == "offline"
    assert edge.first_seen <= edge.last_seen


# --- engines -----------------------------------------------------------------------------------


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'sub' / 'db.sqlite3'}")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_in_memory_sqlite_can_be_migrated_through_its_engine() -> None:
    engine = create_engine_for("sqlite://")
    migrate(engine)
    assert ResultStore(engine).count_crops() == 0


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",  # another database
        "not a url",  # not a URL at all
    ],
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(StorageError, match="expected a"):
        create_engine_for(url)


# --- crop store (each test runs on a folder and on an S3 bucket of a real moto_server) -------
