"""Batched writes: a worker's batch is one transaction and its JPEGs are written together.

The JPEG batch runs on both crop stores: a folder and an S3 bucket of a real moto_server.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, text

from lensflow.cloud.storage import ResultStore, StorageError, create_engine_for, migrate, syncfs
from lensflow.cloud.storage.crops_folder import FolderCropStore
from lensflow.cloud.storage.models import ClassifierResult, CropEmbedding
from lensflow.cloud.storage.repository import CropEntry
from lensflow.cloud.worker.retry import is_transient
from lensflow.shared.dag.engine import NodeResult
from tests.support.protocol_samples import make_header
from tests.support.s3 import CropBackend, crop_backend, moto_s3, s3_env  # noqa: F401

RESULTS = {"color": NodeResult(node="color", status="ok", output={"color": "red", "score": 0.9})}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def entry(crop_id: str) -> CropEntry:
    return CropEntry(make_header(crop_id=crop_id), 10, RESULTS, NOW)


def result_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(ClassifierResult)) or 0


def refuse_bad_crop_ids(engine: Engine) -> None:
    """A trigger that makes the database itself refuse the crop_id 'bad'."""
    statements = {
        "sqlite": [
            "CREATE TRIGGER refuse BEFORE INSERT ON crops WHEN NEW.crop_id = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ],
        "postgresql": [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.crop_id = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON crops FOR EACH ROW EXECUTE FUNCTION refuse()",
        ],
    }[engine.dialect.name]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def test_a_batch_is_stored_with_duplicates_as_no_ops(engine: Engine) -> None:
    store = ResultStore(engine)
    assert store.save_crop_results(
        make_header(crop_id="old"), jpeg_size=1, results=RESULTS, pipeline="p"
    )

    # a batch with a crop stored before and one crop twice
    outcomes = store.save_many(
        [entry("a"), entry("old"), entry("b"), entry("a")], pipeline="p", pipeline_version="v1"
    )

    assert outcomes == [True, False, True, False]
    assert store.count_crops() == 3
    assert result_count(engine) == 3
    crop = store.get_crop("b")
    assert crop is not None
    assert (crop.pipeline_name, crop.pipeline_version) == ("p", "v1")


def test_a_batch_the_database_refuses_is_rolled_back_whole(engine: Engine) -> None:
    refuse_bad_crop_ids(engine)
    store = ResultStore(engine)

    with pytest.raises(StorageError, match="could not save crop a, bad, c and 1 more"):
        store.save_many([entry("a"), entry("bad"), entry("c"), entry("d")], pipeline="p")

    # nothing of the batch is kept: the caller retries it or saves crop by crop
    assert store.count_crops() == 0
    assert result_count(engine) == 0
    assert store.save_many([entry("a"), entry("c")], pipeline="p") == [True, True]


def test_put_many_stores_every_file_and_reports_a_bad_hash(crop_backend: CropBackend) -> None:  # noqa: F811
    crops = crop_backend.store
    blobs = [f"jpeg {i}".encode() for i in range(12)]

    shas = crops.put_many([(blob, hashlib.sha256(blob).hexdigest()) for blob in blobs])

    assert shas == [hashlib.sha256(blob).hexdigest() for blob in blobs]
    assert [crops.get(sha) for sha in shas] == blobs
    with pytest.raises(StorageError, match="expected crop bytes with sha256 '0{64}'"):
        crops.put_many([(b"fine", None), (b"wrong", "0" * 64)])
    assert crops.exists(hashlib.sha256(b"fine").hexdigest())
    assert len(crop_backend.stored()) == len(blobs) + 1  # no temporary files left


def test_an_output_vector_is_stored_as_an_embedding_not_in_the_payload(engine: Engine) -> None:
    vector = np.linspace(-1.0, 1.0, 16, dtype=np.float32)
    results = {
        "embeddings": NodeResult(
            node="embeddings",
            status="ok",
            output={"vector": vector.tolist(), "dim": 16, "model": "lite0@abc"},
            plugin="embeddings",
        ),
        "skipped": NodeResult(node="skipped", status="skipped", reason="no"),
    }
    store = ResultStore(engine)

    assert store.save_many([CropEntry(make_header(crop_id="e1"), 1, results, NOW)], pipeline="p")

    with engine.connect() as connection:
        (row,) = connection.execute(select(CropEmbedding)).all()
    assert (row.node, row.model, row.dim) == ("embeddings", "lite0@abc", 16)
    np.testing.assert_array_equal(np.frombuffer(row.vector, dtype="<f4"), vector)
    crop = store.get_crop("e1")
    assert crop is not None
    payload = {r.node: r.payload for r in crop.results}["embeddings"]
    assert payload == {"vector": {"stored_in": "crop_embeddings"}, "dim": 16, "model": "lite0@abc"}


@pytest.mark.parametrize("vector", [[[1.0, 2.0]], [], [1.0, float("nan")], ["a", "b"]])
def test_a_malformed_vector_is_refused_with_the_node_named(engine: Engine, vector: object) -> None:
    results = {"emb": NodeResult(node="emb", status="ok", output={"vector": vector})}

    with pytest.raises(StorageError, match="expected node 'emb'"):
        ResultStore(engine).save_many([CropEntry(make_header(), 1, results, NOW)], pipeline="p")


def test_a_batch_the_disk_fails_to_sync_is_a_transient_error_leaving_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a folder store whose filesystem fails to sync (an I/O error)
    store = FolderCropStore(tmp_path / "crops")
    stored = store.put_many([(b"already", None), (b"there", None)])

    def failing(folder: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(syncfs, "sync_filesystem", failing)
    blobs = [b"one", b"two", b"already"]
    # when a batch is put, then the error is transient (the worker holds the batch) ...
    with pytest.raises(StorageError, match="could not make a batch of crops durable") as caught:
        store.put_many([(blob, None) for blob in blobs])
    assert is_transient(caught.value)
    # ... and the batch's new crops are not there, not even as temporary files
    files = sorted(p.name for p in (tmp_path / "crops").rglob("*") if p.is_file())
    assert files == sorted(f"{sha}.jpg" for sha in stored)
    store.close()
