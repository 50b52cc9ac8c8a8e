"""HTTP ingest with the offline COCO detector (Coral's SSD on LiteRT): a car takes the car branch.

The same route and code as ``test_api_ingest``; only the server's detector differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lensflow.cloud.ingest import load_server_detector
from lensflow.shared.config.edge import DetectorConfig
from tests.cloud.test_api_ingest import Loaded, ingesting_api, pipeline_file, upload
from tests.support.api import ApiHarness

pytestmark = pytest.mark.integration
__all__ = ["pipeline_file"]  # the fixture, shared with test_api_ingest


@pytest.fixture(scope="module")
def coco_detector(ssd_coco_tflite: Path) -> Iterator[Loaded]:
    loaded = load_server_detector(
        DetectorConfig(backend="litert", model=str(ssd_coco_tflite), conf_threshold=0.3)
    )
    yield loaded
    loaded[0].close()


@pytest.fixture
def api(
    db_url: str, tmp_path: Path, pipeline_file: Path, coco_detector: Loaded
) -> Iterator[ApiHarness]:
    with ingesting_api(db_url, tmp_path, pipeline=pipeline_file, detector=coco_detector) as h:
        yield h


def test_darknet_dog_photo_gives_coco_crops_and_the_car_takes_the_car_branch(
    api: ApiHarness, coco_photos: dict[str, Path], coco_detector: Loaded
) -> None:
    response = upload(api, coco_photos["dog"].read_bytes(), name="dog.jpg")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["provenance"]["model_sha256"] == coco_detector[1]
    classes = {crop["detection"]["class_name"] for crop in body["crops"]}
    assert {"dog", "bicycle", "car"} <= classes
    for crop in body["crops"]:
        stored = api.get(f"/v1/results/{crop['crop_id']}").json()
        car_make = stored["classifiers"]["car_make"]["status"]
        # the design's condition: car make runs only when a car was detected
        assert car_make == ("ok" if crop["detection"]["class_name"] == "car" else "skipped")
