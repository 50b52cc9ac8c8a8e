"""``POST /v1/ingest`` while an inference server a node needs is down: 503, nothing stored.

The image is not at fault, so it is neither stored with an error result nor kept as a dead
letter; the client is told to send it again later.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from lensflow.cloud.api.routes.ingest import use_ingest
from lensflow.cloud.ingest import IngestService
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.cloud import CloudConfig, DatabaseConfig, IngestConfig
from lensflow.shared.config.edge import DetectorConfig
from lensflow.shared.detectors.base import Detection, DetectionBatch, DetectorBackend, ModelInfo
from lensflow.shared.images import sample_image_paths
from tests.support.api import running_api
from tests.support.plugins import make_registry


class CentreDetector(DetectorBackend):
    """Finds one person in the middle of every image."""

    info = ModelInfo(path="centre", names={0: "person"}, input_size=(64, 64))

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """One detection per image: its middle half."""
        found = []
        for image in images:
            height, width = image.shape[:2]
            box = (width / 4, height / 4, width * 3 / 4, height * 3 / 4)
            found.append([Detection(class_id=0, class_name="person", score=0.9, box=box)])
        return DetectionBatch(found)


def test_an_upload_while_the_inference_server_is_down_is_503_and_stores_nothing(
    tmp_path: Path,
) -> None:
    # given ingest whose pipeline has a node on an inference server that stays down
    pipeline = tmp_path / "pipeline.yaml"
    node = {"name": "remote", "class": "remote_brightness", "params": {"unavailable_calls": 99}}
    pipeline.write_text(yaml.safe_dump({"name": "down", "pipeline": [node]}), encoding="utf-8")
    db_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    photo = sample_image_paths()[0].read_bytes()

    with running_api(db_url, tmp_path) as api:
        config = CloudConfig(
            database=DatabaseConfig(url=db_url),
            crop_store=str(tmp_path / "crops"),
            pipeline=str(pipeline),
            ingest=IngestConfig(detector=DetectorConfig(model="centre")),
        )
        service = IngestService(
            config,
            results=api.results,
            crops=api.crops,
            registry=make_registry(),
            load=lambda _config: (CentreDetector(), "c" * 64),
        )
        use_ingest(api.app, service)

        # when an image is uploaded
        response = api.post(
            "/v1/ingest",
            who="operator",
            files={"file": ("photo.jpg", photo, "image/jpeg")},
            data={"site": "site1", "camera": "cam1"},
        )

        # then it is refused as a service outage, to be sent again, and nothing is kept
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "inference_unavailable"
        assert "inference service" in error["message"] and "again later" in error["message"]
        assert api.results.count_crops() == 0
        with api.engine.connect() as connection:
            letters = connection.exec_driver_sql("SELECT count(*) FROM dead_letters").scalar_one()
        assert letters == 0
