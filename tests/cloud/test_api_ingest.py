"""HTTP ingest spec: ``POST /v1/ingest`` runs the real person model on real photos, crops each
person, runs the DAG on the crops and stores them as the worker does; refusals say why.

The detector is exported and loaded once per module; each test gets a fresh database
(SQLite and PostgreSQL) and crop store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.api.routes.ingest import use_ingest
from lensflow.cloud.ingest import IngestService, lensflow_version, load_server_detector
from lensflow.cloud.storage.models import DeadLetter
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.cloud import CloudConfig, DatabaseConfig, IngestConfig
from lensflow.shared.config.edge import DetectorConfig
from lensflow.shared.detectors.base import DetectorBackend
from lensflow.shared.errors import DetectorError
from lensflow.shared.images import decode_image, sample_image_paths
from tests.support.api import ApiHarness, running_api
from tests.support.bombs import BOMBS, jpeg_bomb
from tests.support.plugins import make_registry

pytestmark = pytest.mark.integration

SITE, CAMERA = "site1", "cam1"
PERSON_CLASSES = {"Normal", "Fall"}  # the person model's own names: standing, fallen
PIPELINE: dict[str, Any] = {
    "version": 1,
    "name": "ingest-test",
    "pipeline": [
        {"name": "object_detection", "class": "edge_detection"},
        {
            "name": "tshirt_color",
            "class": "tshirt_color",
            "depends_on": "object_detection",
            "when": {"contains": ["object_detection.detected_classes", "Normal"]},
        },
        {
            "name": "car_make",
            "class": "car_make_vit",
            "depends_on": "object_detection",
            "when": "'car' in context['object_detection']['detected_classes']",
        },
    ],
}
Loaded = tuple[DetectorBackend, str]


@pytest.fixture(scope="module")
def person_onnx(yolov8s_person_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real person detector as ONNX (FP32, 640)."""
    from lensflow.models.export.exporter import ultralytics_export

    workdir = tmp_path_factory.mktemp("onnx")
    return ultralytics_export(yolov8s_person_pt, fmt="onnx", imgsz=640, half=False, workdir=workdir)


@pytest.fixture(scope="module")
def detector_config(person_onnx: Path) -> DetectorConfig:
    return DetectorConfig(backend="onnxruntime", model=str(person_onnx), conf_threshold=0.3)


@pytest.fixture(scope="module")
def detector(detector_config: DetectorConfig) -> Iterator[Loaded]:
    """The detector and its model's sha256, loaded once for the module."""
    loaded = load_server_detector(detector_config)
    yield loaded
    loaded[0].close()


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "pipeline.yaml"
    path.write_text(yaml.safe_dump(PIPELINE, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def ingesting_api(
    db_url: str, tmp_path: Path, *, pipeline: Path, detector: Loaded, **ingest: Any
) -> Iterator[ApiHarness]:
    """The API with ingest configured: the module's detector, the test plugins."""
    with running_api(db_url, tmp_path) as api:
        config = CloudConfig(
            database=DatabaseConfig(url=db_url),
            crop_store=str(tmp_path / "crops"),
            pipeline=str(pipeline),
            ingest=IngestConfig(detector=DetectorConfig(model="module-detector"), **ingest),
        )
        service = IngestService(
            config,
            results=api.results,
            crops=api.crops,
            registry=make_registry(),
            load=lambda _config: detector,
        )
        use_ingest(api.app, service)
        yield api


@pytest.fixture
def api(db_url: str, tmp_path: Path, pipeline_file: Path, detector: Loaded) -> Iterator[ApiHarness]:
    with ingesting_api(db_url, tmp_path, pipeline=pipeline_file, detector=detector) as harness:
        yield harness


def upload(
    api: ApiHarness,
    data: bytes,
    *,
    name: str = "photo.jpg",
    content_type: str = "image/jpeg",
    who: str = "operator",
    **form: str,
) -> Any:
    """POST the bytes as the form's ``file``, with the site and camera (and ``form``)."""
    return api.post(
        "/v1/ingest",
        who=who,
        files={"file": (name, data, content_type)},
        data={"site": SITE, "camera": CAMERA, **form},
    )


def encoded(image: Image, suffix: str) -> bytes:
    ok, buffer = cv2.imencode(suffix, image)
    assert ok
    return buffer.tobytes()


@pytest.fixture(scope="module")
def bus_jpeg() -> bytes:
    """The bus photo's own JPEG bytes."""
    return next(p for p in sample_image_paths() if p.stem == "bus").read_bytes()


def dead_letters(api: ApiHarness) -> list[DeadLetter]:
    with Session(api.engine) as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


@pytest.mark.parametrize(
    "suffix",
    [
        ".jpg",  # the photo's own JPEG bytes
        ".png",  # the same pixels as PNG
        ".webp",  # ... and as WebP
    ],
)
def test_bus_photo_yields_person_crops_stored_as_rows_and_jpegs(
    api: ApiHarness, sample_images: dict[str, Image], detector: Loaded, bus_jpeg: bytes, suffix: str
) -> None:
    bus = sample_images["bus"]
    data = bus_jpeg if suffix == ".jpg" else encoded(bus, suffix)

    response = upload(api, data, name=f"bus{suffix}", content_type="application/octet-stream")

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["frame_width"], body["frame_height"]) == (bus.shape[1], bus.shape[0])
    assert body["media_type"] == {".jpg": "image/jpeg", ".png": "image/png"}.get(
        suffix, "image/webp"
    )
    assert body["provenance"]["model_sha256"] == detector[1]
    assert body["provenance"]["config_hash"].startswith("http:")
    assert body["provenance"]["agent_version"] == lensflow_version()
    crops = body["crops"]
    assert len(crops) >= 3, "the bus photo shows at least three people"
    assert len(crops) == body["detections"]
    scores = [crop["detection"]["score"] for crop in crops]
    assert scores == sorted(scores, reverse=True)
    for crop in crops:
        assert crop["detection"]["class_name"] in PERSON_CLASSES
        row = api.results.get_crop(crop["crop_id"])
        assert row is not None
        assert (row.site, row.camera, row.class_name) == (
            SITE,
            CAMERA,
            crop["detection"]["class_name"],
        )
        assert row.model_sha256 == detector[1]
        assert row.attributes == {"source": "http", "uploaded_by": "operator-key"}
        jpeg = decode_image(api.crops.get(row.jpeg_sha256))
        assert max(jpeg.shape[:2]) <= 512


def test_conditional_nodes_ran_or_skipped_on_each_crop(
    api: ApiHarness, sample_images: dict[str, Image]
) -> None:
    response = upload(api, encoded(sample_images["bus"], ".jpg"))

    assert response.status_code == 201, response.text
    for crop in response.json()["crops"]:
        row = api.results.get_crop(crop["crop_id"])
        assert row is not None
        stored = {result.node: result for result in row.results}
        summary = crop["classifiers"]
        assert summary["object_detection"]["status"] == "ok"
        if crop["detection"]["class_name"] == "Normal":  # a standing person: the shirt node ran
            assert summary["tshirt_color"]["status"] == stored["tshirt_color"].status == "ok"
            assert summary["tshirt_color"]["label"] == stored["tshirt_color"].label
            assert stored["tshirt_color"].label is not None
        else:
            assert summary["tshirt_color"]["status"] == "skipped"
        assert summary["car_make"]["status"] == stored["car_make"].status == "skipped"
        assert "car" in stored["car_make"].reason


def test_an_image_with_nothing_in_it_answers_200_with_no_crops(api: ApiHarness) -> None:
    grey = np.full((480, 640, 3), 128, dtype=np.uint8)

    response = upload(api, encoded(grey, ".png"), name="grey.png")

    assert response.status_code == 200, response.text
    assert (response.json()["crops"], response.json()["detections"]) == ([], 0)
    assert api.results.count_crops() == 0


def test_captured_at_is_kept_in_utc(api: ApiHarness, sample_images: dict[str, Image]) -> None:
    response = upload(
        api, encoded(sample_images["zidane"], ".jpg"), captured_at="2024-05-01T12:00:00+02:00"
    )

    assert response.status_code == 201, response.text
    expected = datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert {datetime.fromisoformat(c["captured_at"]) for c in response.json()["crops"]} == {
        expected
    }


def test_an_image_over_the_limit_is_413_naming_the_limit_and_the_size(
    db_url: str, tmp_path: Path, pipeline_file: Path, detector: Loaded, bus_jpeg: bytes
) -> None:
    data = bus_jpeg
    with ingesting_api(
        db_url, tmp_path, pipeline=pipeline_file, detector=detector, max_image_bytes=100_000
    ) as api:
        response = upload(api, data)

        assert response.status_code == 413
        assert response.json()["error"]["code"] == "image_too_large"
        assert "max_image_bytes=100000" in response.json()["error"]["message"]
        assert f"got {len(data)} bytes" in response.json()["error"]["message"]
        assert api.results.count_crops() == 0


def test_a_text_file_named_like_a_jpeg_is_415_saying_what_it_is(api: ApiHarness) -> None:
    response = upload(api, b"just some notes, not a photo\n", name="x.jpg")

    assert response.status_code == 415
    message = response.json()["error"]["message"]
    assert "expected a JPEG, PNG or WebP image" in message
    assert "got text" in message and "declared as image/jpeg" in message
    assert dead_letters(api) == []


def test_a_truncated_jpeg_is_refused_and_kept_as_a_dead_letter(
    api: ApiHarness, bus_jpeg: bytes
) -> None:
    truncated = bus_jpeg[:20_000]

    response = upload(api, truncated)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "undecodable_image"
    [letter] = dead_letters(api)
    assert (letter.source, letter.topic) == ("http", f"/v1/ingest/{SITE}/{CAMERA}")
    assert letter.payload == truncated
    assert "do not decode" in letter.reason
    assert f"dead letter {letter.id}" in response.json()["error"]["message"]
    assert api.results.count_crops() == 0


# Decompression bombs of each format, declaring 16000x12000 (192 MP) against the default
# ingest.max_image_pixels (50 MP): refused from the header, kept as dead letters
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_an_image_declaring_a_huge_canvas_is_refused_before_decoding(
    api: ApiHarness, name: str
) -> None:
    build, media_type = BOMBS[name]
    bomb = build(16000, 12000)

    response = upload(api, bomb, content_type=media_type)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "undecodable_image"
    assert "expected at most 50,000,000 pixels, got a 16000x12000 image" in error["message"]
    [letter] = dead_letters(api)
    assert (letter.payload_size, letter.payload_sha256) == (len(bomb), sha256(bomb).hexdigest())
    assert api.results.count_crops() == 0


def test_the_pixel_limit_is_ingest_max_image_pixels(
    db_url: str, tmp_path: Path, pipeline_file: Path, detector: Loaded, bus_jpeg: bytes
) -> None:
    with ingesting_api(
        db_url, tmp_path, pipeline=pipeline_file, detector=detector, max_image_pixels=500_000
    ) as api:
        response = upload(api, bus_jpeg)

    assert response.status_code == 400
    assert (
        "expected at most 500,000 pixels, got a 810x1080 image"
        in (response.json()["error"]["message"])
    )


def test_a_bomb_is_refused_before_the_detector_loads(
    db_url: str, tmp_path: Path, pipeline_file: Path, bus_jpeg: bytes
) -> None:
    def cannot_load(_config: DetectorConfig) -> Loaded:
        raise DetectorError("no detector here")

    config = CloudConfig(
        database=DatabaseConfig(url=db_url),
        crop_store=str(tmp_path / "crops"),
        pipeline=str(pipeline_file),
        ingest=IngestConfig(detector=DetectorConfig(model="unloadable")),
    )
    with running_api(db_url, tmp_path) as api:
        service = IngestService(config, results=api.results, crops=api.crops, load=cannot_load)
        use_ingest(api.app, service)
        photo = upload(api, bus_jpeg)
        bomb = upload(api, jpeg_bomb(30000, 30000))

    assert (photo.status_code, photo.json()["error"]["code"]) == (503, "ingest_unavailable")
    assert (bomb.status_code, bomb.json()["error"]["code"]) == (400, "undecodable_image")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("viewer", 403),  # a viewer may read results, not add them
        (None, 401),  # no key at all
    ],
)
def test_uploading_needs_an_operator_key(
    api: ApiHarness, bus_jpeg: bytes, headers: str | None, status: int
) -> None:
    files = {"file": ("bus.jpg", bus_jpeg, "image/jpeg")}
    form = {"site": SITE, "camera": CAMERA}

    if headers is None:
        response = api.client.post("/v1/ingest", files=files, data=form)
    else:
        response = api.post("/v1/ingest", who=headers, files=files, data=form)

    assert response.status_code == status
    assert api.results.count_crops() == 0


def test_a_site_that_is_no_topic_segment_is_422_naming_the_rule(
    api: ApiHarness, bus_jpeg: bytes
) -> None:
    response = upload(api, bus_jpeg, site="plant/a")

    assert response.status_code == 422
    assert "site must be 1-64 characters" in response.json()["error"]["message"]


def test_without_an_ingest_section_the_route_answers_503(
    db_url: str, tmp_path: Path, bus_jpeg: bytes
) -> None:
    with running_api(db_url, tmp_path) as api:
        response = upload(api, bus_jpeg)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ingest_not_configured"
    assert "ingest is not configured" in response.json()["error"]["message"]


def test_a_detector_that_cannot_load_answers_503_naming_it_not_its_path(
    db_url: str, tmp_path: Path, pipeline_file: Path, bus_jpeg: bytes
) -> None:
    missing = DetectorConfig(backend="onnxruntime", model=str(tmp_path / "missing.onnx"))
    config = CloudConfig(
        database=DatabaseConfig(url=db_url),
        crop_store=str(tmp_path / "crops"),
        pipeline=str(pipeline_file),
        ingest=IngestConfig(detector=missing),
    )
    with running_api(db_url, tmp_path) as api:
        use_ingest(api.app, IngestService(config, results=api.results, crops=api.crops))
        response = upload(api, bus_jpeg)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ingest_unavailable"
    message = response.json()["error"]["message"]
    assert "ingest cannot load its detector" in message
    assert str(tmp_path) not in message  # the model's path is in the server log only
