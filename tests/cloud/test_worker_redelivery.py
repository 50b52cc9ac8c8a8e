"""Re-deliveries are cheap and conflicts are loud: sorted out before any JPEG is decoded.

A worker fed by an in-memory intake (it keeps what is acknowledged and what is published,
like a broker would) runs the real pipeline machinery with a classifier that counts its calls.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from lensflow.cloud.worker.intake import Delivery
from lensflow.cloud.worker.triage import triage
from lensflow.cloud.worker.worker import Worker
from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config import load_cloud_config
from lensflow.shared.protocol import decode_crop, encode_crop
from lensflow.shared.protocol.receipts import decode_receipts
from tests.support.worker import TOPIC, MemoryIntake, SampleCrop, sample_crops, write_cloud_config

CAMERA_RECEIPTS = "lensflow/v1/site1/cam1/receipts"


class CountingClassifier(BaseClassifier):
    """Counts the crops it sees (class attribute: the worker builds its own instance)."""

    key = "counting"
    version = "test-1"
    outputs = ("label",)
    calls: ClassVar[int] = 0

    def process(self, image: Image, context: Context) -> Output:
        CountingClassifier.calls += 1
        return {"label": "seen"}


def delivery(payload: bytes, topic: str = TOPIC) -> Delivery:
    return Delivery(topic=topic, payload=payload, redelivered=False, token=None)


@pytest.fixture
def worker(tmp_path: Path, registry: PluginRegistry) -> Iterator[tuple[Worker, MemoryIntake]]:
    registry.register(CountingClassifier, replace=True)
    (tmp_path / "pipeline.yaml").write_text(
        "pipeline:\n  - {name: object_detection, class: edge_detection}\n"
        "  - {name: count, class: counting, depends_on: object_detection}\n"
    )
    config = write_cloud_config(
        tmp_path, db_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", intake={"type": "mqtt"}
    )
    intake = MemoryIntake()
    built = Worker(load_cloud_config(config), registry=registry, intake=intake)
    CountingClassifier.calls = 0
    yield built, intake
    built.engine.dispose()


def receipts_of(intake: MemoryIntake) -> dict[str, str]:
    """crop_id -> outcome of every receipt published so far."""
    found = {}
    for topic, payload in intake.published:
        assert topic == CAMERA_RECEIPTS
        for receipt in decode_receipts(payload).receipts:
            found[receipt.crop_id] = receipt.outcome
    return found


def forged(crop: SampleCrop, other: SampleCrop) -> bytes:
    """``crop``'s id on ``other``'s JPEG: the same crop_id with different bytes."""
    header = decode_crop(other.message).header.model_copy(update={"crop_id": crop.crop_id})
    return encode_crop(header, other.jpeg)


def test_a_redelivery_storm_runs_no_classifier_and_is_confirmed(
    worker: tuple[Worker, MemoryIntake],
) -> None:
    built, intake = worker
    crops = sample_crops(10, prefix="storm")
    built.process_batch([delivery(c.message) for c in crops])
    assert CountingClassifier.calls == 10
    # when the same 10 crops arrive 20 times over (an edge resending after a lost receipt)
    for _ in range(20):
        built.process_batch([delivery(c.message) for c in crops])
    # then no classifier ran again, every delivery was acked, and each got a receipt
    assert CountingClassifier.calls == 10
    assert len(intake.acked) == 210
    assert built.results.count_crops() == 10
    assert set(receipts_of(intake)) == {c.crop_id for c in crops}


def test_a_crop_id_taken_by_another_jpeg_is_a_dead_letter_with_both_hashes(
    worker: tuple[Worker, MemoryIntake],
) -> None:
    built, intake = worker
    first, other = sample_crops(2, prefix="conflict")
    built.process_batch([delivery(first.message)])
    # when another JPEG comes with the same crop_id
    built.process_batch([delivery(forged(first, other))])
    # then it is a dead letter naming both hashes and the crop id, and the stored crop stays
    letter = built.results.get_dead_letter(1)
    assert letter is not None and letter.crop_id == first.crop_id
    assert first.sha256 in letter.reason and other.sha256 in letter.reason
    assert "conflict" in letter.reason
    stored = built.results.get_crop(first.crop_id)
    assert stored is not None and stored.jpeg_sha256 == first.sha256
    assert receipts_of(intake)[first.crop_id] == "dead_letter"


def test_copies_within_one_batch_run_once_and_follow_the_first(
    worker: tuple[Worker, MemoryIntake],
) -> None:
    built, intake = worker
    (crop,) = sample_crops(1, prefix="copies")

    built.process_batch([delivery(crop.message)] * 3)

    assert CountingClassifier.calls == 1
    assert len(intake.acked) == 3 and built.results.count_crops() == 1


def test_an_unreadable_message_is_a_dead_letter_that_keeps_what_it_can(
    worker: tuple[Worker, MemoryIntake],
) -> None:
    built, intake = worker
    (crop,) = sample_crops(1, prefix="bad")
    broken = crop.message[:-10] + b"\x00" * 10  # the JPEG no longer matches its hash

    built.process_batch([delivery(broken)])

    letter = built.results.get_dead_letter(1)
    assert letter is not None and letter.crop_id == crop.crop_id and "sha256" in letter.reason
    assert receipts_of(intake) == {crop.crop_id: "dead_letter"}  # the edge stops resending


def test_triage_sorts_new_known_conflicting_and_repeated_crops() -> None:
    new, known, conflicting = sample_crops(3, prefix="t")
    other = sample_crops(4, prefix="o")[3]
    stored = {known.crop_id: known.sha256, conflicting.crop_id: other.sha256}
    batch = [
        delivery(new.message),
        delivery(known.message),
        delivery(conflicting.message),
        delivery(new.message),  # a copy within the batch
        delivery(b"garbage"),
    ]

    sorted_out = triage(batch, max_bytes=1 << 20, known=lambda ids: stored)

    assert [d.payload for d, _ in sorted_out.fresh] == [new.message]
    assert [d.payload for d, _ in sorted_out.duplicates] == [known.message]
    assert [d.payload for d, _ in sorted_out.copies] == [new.message]
    assert [(letter.kind, letter.crop_id) for letter in sorted_out.letters] == [
        ("conflict", conflicting.crop_id),
        ("protocol", None),
    ]


def test_a_message_over_the_protocol_limit_is_a_dead_letter() -> None:
    # the old worker default (5,000,000) stored a 4.4 MB message the protocol forbids
    oversized = b"LFC\x01" + bytes(4_400_000)

    sorted_out = triage([delivery(oversized)], max_bytes=4 * 1024 * 1024, known=lambda ids: {})

    assert [letter.kind for letter in sorted_out.letters] == ["oversized"]


def test_copies_of_a_crop_the_database_refuses_follow_its_dead_letter(
    worker: tuple[Worker, MemoryIntake], tmp_path: Path
) -> None:
    built, intake = worker
    first, refused = sample_crops(2, prefix="refused")
    # given a database that refuses one crop_id (a trigger: a real constraint failure)
    with sqlite3.connect(tmp_path / "db.sqlite3") as connection:
        connection.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON crops WHEN NEW.crop_id = '{refused.crop_id}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
        )
    # when it arrives three times in one batch
    built.process_batch([delivery(first.message), *[delivery(refused.message)] * 3])
    # then one dead letter, and every delivery is acked: no copy waits for a reconnect
    assert built.results.get_dead_letter(1) is not None
    assert built.results.get_dead_letter(2) is None
    assert len(intake.acked) == 4
    assert receipts_of(intake) == {first.crop_id: "stored", refused.crop_id: "dead_letter"}
