"""Real review data (:mod:`tests.support.review_real`): the demo's COCO detector and DAG over
the sample photos and a few clip frames, stored as the cloud worker stores crops.

The models come from the project's cache (``var/models``); a fresh clone fetches and exports
them on first use (about two minutes, once).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

from lensflow.cloud.storage import FolderCropStore, ResultStore, create_engine_for, migrate
from tests.support.review_real import EMBEDDING_DIM, EMBEDDING_NODE, demo_frames
from tests.support.review_real import seed_detected_crops as seed

pytestmark = [pytest.mark.integration]


def test_seeds_real_crops_with_the_demo_dags_results(tmp_path: Path) -> None:
    # given the sample photos (no varied views) and 2 frames of the clip
    frames = demo_frames(views=0, clip_frames=4, every=2)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'review.sqlite3'}")
    migrate(engine)
    store = FolderCropStore(tmp_path / "crops")

    # when they are detected, cut, classified and stored
    seeded = seed(ResultStore(engine), store, frames=frames)

    # then the people and the bus of bus.jpg and zidane.jpg are there, with COCO's names
    with engine.connect() as db:
        crops = db.execute(sa.text("select id, camera, class_name, jpeg_sha256 from crops")).all()
        results = db.execute(
            sa.text("select crop_pk, node, status, label from classifier_results")
        ).all()
        vectors = db.execute(
            sa.text("select crop_pk, node, dim, vector from crop_embeddings")
        ).all()
    assert len(seeded) == len(crops) >= 6
    assert {"person", "bus"} <= {crop.class_name for crop in seeded}
    assert sum(crop.camera == "photos" for crop in seeded) >= 5
    assert any(crop.camera == "video" for crop in seeded)
    # each stored JPEG decodes and is capped at the demo edge's max_side (384)
    for row in crops:
        image = cv2.imdecode(np.frombuffer(store.get(row.jpeg_sha256), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= 384
    # the shirt-colour node named a colour for each person, the vehicle node a type for each
    # vehicle (and each ran only there), and each crop has a unit-length 1280-d embedding
    # under the DAG's embedding node
    by_node = {(pk, node): (status, label) for pk, node, status, label in results}
    for row in crops:
        for node, classes in [
            ("tshirt_color_classification", {"person"}),
            ("vehicle_type_classification", {"car", "truck", "bus"}),
        ]:
            status, label = by_node[(row.id, node)]
            if row.class_name in classes:
                assert status == "ok" and label, (row.class_name, node)
            else:
                assert status == "skipped", (row.class_name, node)
    assert {(pk, node, dim) for pk, node, dim, _ in vectors} == {
        (row.id, EMBEDDING_NODE, EMBEDDING_DIM) for row in crops
    }
    for *_, blob in vectors:
        assert np.linalg.norm(np.frombuffer(blob, np.float32)) == pytest.approx(1.0, abs=1e-3)
