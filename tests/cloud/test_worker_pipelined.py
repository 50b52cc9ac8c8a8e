"""The worker's two stages: a batch is prepared (triage, decode, DAG) while the previous one
commits (crop store, database, acks, receipts) on the committer thread.

A crop id of the previous batch, whose commit may still be under way, is not fresh again: the
same JPEG follows that crop's outcome (acked once it is committed), another JPEG is a conflict.
The crop store here is the real folder store behind a delay, so the commit is still in flight
when the next batch is sorted out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from lensflow.cloud.storage import CropStore
from lensflow.cloud.worker.intake import Delivery
from lensflow.cloud.worker.worker import Worker
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config import load_cloud_config
from lensflow.shared.protocol import decode_crop, encode_crop
from tests.support.worker import TOPIC, MemoryIntake, SampleCrop, sample_crops, write_cloud_config

DELAY_S = 0.3


class SlowCropStore:
    """A crop store that takes ``DELAY_S`` more per batch write: a slow disk."""

    def __init__(self, inner: CropStore) -> None:
        self.inner = inner

    def put_many(self, items: Sequence[tuple[bytes, str | None]]) -> list[str]:
        time.sleep(DELAY_S)
        return self.inner.put_many(items)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture
def worker(tmp_path: Path, registry: PluginRegistry) -> Iterator[tuple[Worker, MemoryIntake]]:
    config = write_cloud_config(
        tmp_path, db_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", intake={"type": "mqtt"}
    )
    intake = MemoryIntake()
    built = Worker(load_cloud_config(config), registry=registry, intake=intake)
    built.processor.crops = SlowCropStore(built.crops)  # type: ignore[assignment]
    yield built, intake
    built._committer.shutdown(wait=True)
    built._writer.shutdown(wait=True)
    built.engine.dispose()


def delivery(payload: bytes) -> Delivery:
    return Delivery(topic=TOPIC, payload=payload, redelivered=False, token=None)


def forged(crop: SampleCrop, other: SampleCrop) -> bytes:
    """``crop``'s id on ``other``'s JPEG: the same crop_id with different bytes."""
    header = decode_crop(other.message).header.model_copy(update={"crop_id": crop.crop_id})
    return encode_crop(header, other.jpeg)


def test_a_batch_is_prepared_while_the_previous_one_commits(
    worker: tuple[Worker, MemoryIntake],
) -> None:
    built, intake = worker
    first, second = sample_crops(4)[:2], sample_crops(4)[2:]

    # when two batches come one after the other
    started = time.perf_counter()
    built._process_safely([delivery(c.message) for c in first])
    handed_over = time.perf_counter() - started

    # then the first is handed to the committer without waiting for the slow crop store
    assert handed_over < DELAY_S
    built._process_safely([delivery(c.message) for c in second])
    built._drain()
    assert built.results.count_crops() == 4
    assert len(intake.acked) == 4


def test_a_crop_of_the_batch_in_flight_follows_its_outcome_or_is_a_conflict(
    worker: tuple[Worker, MemoryIntake],
) -> None:
    built, intake = worker
    crop, other = sample_crops(2)

    # given a batch whose commit is still in flight
    built._process_safely([delivery(crop.message)])

    # when the next batch carries the same crop again and its id on another JPEG
    again, conflict = delivery(crop.message), delivery(forged(crop, other))
    built._process_safely([again, conflict])
    built._drain()

    # then the crop is stored once, the copy is acked after it, the other JPEG is a conflict
    assert built.results.count_crops() == 1
    stored = built.results.get_crop(crop.crop_id)
    assert stored is not None and stored.jpeg_sha256 == crop.sha256
    letter = built.results.get_dead_letter(1)
    assert letter is not None and "conflict" in letter.reason
    assert len(intake.acked) == 3
    assert intake.acked.index(again) > 0  # not before the first copy was committed
