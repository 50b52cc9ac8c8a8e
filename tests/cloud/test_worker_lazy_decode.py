"""JPEGs are decoded only for pipelines with a node that reads pixels.

A pipeline whose nodes read only the header and context (``needs_pixels = False``) gets each
JPEG's header checked, nothing decoded: a JPEG with a valid header but a corrupt body is
stored with its results. The same JPEG is a dead letter (``image``) when a node needs its
pixels, and a node that needs pixels gets the decoded pixels, as before.

The worker runs its real batch path (triage, decode, DAG, crop store, SQLite) on deliveries
handed to it by an in-memory intake that records acks and publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lensflow.cloud.worker.intake import Delivery
from lensflow.cloud.worker.worker import Worker
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config import load_cloud_config
from lensflow.shared.images import decode_image
from lensflow.shared.protocol import encode_crop, new_crop_header
from tests.support.bombs import jpeg_bomb
from tests.support.plugins import brightness_label
from tests.support.protocol_samples import make_header
from tests.support.worker import PROVENANCE, TOPIC, MemoryIntake, sample_crops, write_cloud_config

SIZE_ONLY = [  # reads the edge's detection, then the crop's size: no pixels
    {"name": "object_detection", "class": "edge_detection"},
    {"name": "size", "class": "crop_size", "depends_on": "object_detection"},
]
WITH_PIXELS = [*SIZE_ONLY, {"name": "remote", "class": "remote_brightness"}]


MakeWorker = Callable[[list[dict[str, object]]], tuple[Worker, MemoryIntake]]
"""Builds a worker on a pipeline of the given nodes, with its own folder and database."""


@pytest.fixture
def make_worker(tmp_path: Path, registry: PluginRegistry) -> Iterator[MakeWorker]:
    built: list[Worker] = []

    def make(nodes: list[dict[str, object]]) -> tuple[Worker, MemoryIntake]:
        folder = tmp_path / f"worker-{len(built)}"
        folder.mkdir()
        pipeline = {"version": 1, "name": "lazy", "pipeline": nodes}
        (folder / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
        config = write_cloud_config(
            folder, db_url=f"sqlite:///{folder / 'db.sqlite3'}", intake={"type": "mqtt"}
        )
        intake = MemoryIntake()
        worker = Worker(load_cloud_config(config), registry=registry, intake=intake)
        built.append(worker)
        return worker, intake

    yield make
    for worker in built:
        worker.engine.dispose()


def corrupt_body(jpeg: bytes) -> bytes:
    """``jpeg`` with its header intact and its compressed data (from SOS on) zeroed."""
    start = jpeg.index(b"\xff\xda")
    return jpeg[:start] + b"\x00" * (len(jpeg) - start - 2) + b"\xff\xd9"


def message_of(jpeg: bytes, *, crop_id: str) -> bytes:
    """A valid crop message carrying ``jpeg``."""
    sample = make_header()
    header = new_crop_header(
        jpeg=jpeg,
        site="site1",
        camera="cam1",
        captured_at=datetime.now(UTC),
        detection=sample.detection,
        provenance=PROVENANCE,
        crop_id=crop_id,
    )
    return encode_crop(header, jpeg)


def image_letters(worker: Worker) -> float:
    name = "lensflow_worker_dead_letters_total"
    return worker.metrics.registry.get_sample_value(name, {"reason": "image"}) or 0.0


def delivery(payload: bytes) -> Delivery:
    return Delivery(topic=TOPIC, payload=payload, redelivered=False, token=None)


def test_a_pipeline_without_pixel_nodes_says_so(
    make_worker: MakeWorker,
) -> None:
    assert not make_worker(SIZE_ONLY)[0].processor.pipeline.needs_pixels
    assert make_worker(WITH_PIXELS)[0].processor.pipeline.needs_pixels


def test_without_pixel_nodes_a_corrupt_body_is_stored_with_its_results(
    make_worker: MakeWorker,
) -> None:
    # given a worker whose nodes need no pixels, and a JPEG that would not decode
    worker, intake = make_worker(SIZE_ONLY)
    jpeg = corrupt_body(sample_crops(1)[0].jpeg)  # 160x200 declared in its header

    # when it arrives
    worker.process_batch([delivery(message_of(jpeg, crop_id="corrupt-1"))])

    # then it is stored and acked, its nodes ran on the size its header declares
    row = worker.results.get_crop("corrupt-1")
    assert row is not None and len(intake.acked) == 1
    results = {result.node: result for result in row.results}
    assert results["size"].status == "ok" and results["size"].label == "tall"
    assert results["size"].payload["width"] == 160
    assert worker.crops.get(row.jpeg_sha256) == jpeg


@pytest.mark.parametrize(
    "jpeg",
    [
        b"\xff\xd8" + b"not really a jpeg" * 20,  # no size in its header
        jpeg_bomb(30000, 30000),  # declares more than MAX_CROP_PIXELS
        corrupt_body(sample_crops(1)[0].jpeg)[:-200],  # cut short: no end-of-image marker
    ],
)
def test_without_pixel_nodes_a_bad_header_is_still_a_dead_letter(
    make_worker: MakeWorker, jpeg: bytes
) -> None:
    worker, intake = make_worker(SIZE_ONLY)

    worker.process_batch([delivery(message_of(jpeg, crop_id="bad-header"))])

    assert worker.results.get_crop("bad-header") is None
    assert image_letters(worker) == 1
    assert len(intake.acked) == 1


def test_with_a_pixel_node_a_corrupt_body_is_a_dead_letter(
    make_worker: MakeWorker,
) -> None:
    # given a worker with a node that reads pixels, and a JPEG whose body does not decode
    worker, intake = make_worker(WITH_PIXELS)
    good = sample_crops(1)[0]
    jpeg = corrupt_body(good.jpeg)

    # when it arrives beside a good crop
    worker.process_batch([delivery(message_of(jpeg, crop_id="corrupt-2")), delivery(good.message)])

    # then it is a dead letter of kind image, the good crop is stored, both are acked
    assert worker.results.get_crop("corrupt-2") is None
    letter = worker.results.get_dead_letter(1)
    assert letter is not None and letter.crop_id == "corrupt-2"
    assert image_letters(worker) == 1
    assert worker.results.get_crop(good.crop_id) is not None
    assert len(intake.acked) == 2


def test_a_node_that_needs_pixels_gets_the_decoded_pixels(
    make_worker: MakeWorker,
) -> None:
    worker, _ = make_worker(WITH_PIXELS)
    crops = sample_crops(4)

    worker.process_batch([delivery(crop.message) for crop in crops])

    for crop in crops:
        row = worker.results.get_crop(crop.crop_id)
        assert row is not None
        results = {result.node: result for result in row.results}
        expected = brightness_label(decode_image(crop.jpeg))
        assert (results["remote"].label, results["remote"].score) == (
            expected["label"],
            pytest.approx(expected["score"]),
        )
        assert results["size"].label == "tall"  # 160x200: a no-pixel node sees the real size
