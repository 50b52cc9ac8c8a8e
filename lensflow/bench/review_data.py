"""A served, seeded cloud API for the desktop review app: its tests, screenshots and benchmark.

:func:`seed_crops` stores real crops of the sample photos (JPEGs in the crop store, rows
through :class:`~cloud.storage.ResultStore`) with classifier results of two nodes;
:class:`ReviewApi` serves a database with ``lensflow cloud api`` in a child process and
issues a key per role.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2

from cloud.api import KeyStore
from cloud.api.keys import ROLES
from cloud.storage import CropStore, ResultStore, create_engine_for, migrate
from lensflow.bench.cloud_api import _api_config, _ApiServer
from lensflow.bench.samples import crop_images
from shared.dag.engine import NodeResult
from shared.protocol import Detection, Provenance, new_crop_header

T0 = datetime(2025, 1, 30, 8, 0, tzinfo=UTC)
"""Capture time of the first seeded crop; the next ones follow a minute apart."""
CAMERAS = ("gate-north", "gate-south", "dock-1")
CLASSES = ("person", "person", "car", "truck")
COLORS = ("red", "blue", "black", "white", "grey")
VEHICLES = ("sedan", "van", "pickup")


@dataclass(frozen=True)
class SeededCrop:
    """A crop :func:`seed_crops` stored."""

    crop_id: str
    camera: str
    class_name: str
    captured_at: datetime


def seed_crops(
    results: ResultStore,
    crops: CropStore,
    *,
    count: int,
    prefix: str = "crop",
    start: datetime = T0,
    cameras: Sequence[str] = CAMERAS,
    seed: int = 7,
) -> list[SeededCrop]:
    """Store ``count`` real crops of the sample photos with classifier results.

    Every crop has a ``color`` node result (label and score); crops of class car or truck
    also a ``vehicle`` one, persons a skipped ``vehicle``.

    Args:
        results: Where the rows go.
        crops: Where the JPEGs go.
        count: How many crops.
        prefix: Crop ids are ``{prefix}-{index:05d}``.
        start: Capture time of the first; the others follow a minute apart.
        cameras: Cameras, taken in turn.
        seed: Seed of the crops' places, classes, scores and labels.

    Returns:
        The stored crops, oldest first.

    """
    chooser = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    seeded = []
    for index, (image, box, (width, height)) in enumerate(crop_images(count, seed=seed)):
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError(f"expected OpenCV to encode crop {index} as JPEG, got a failure")
        jpeg = buffer.tobytes()
        crops.put(jpeg)
        crop = SeededCrop(
            crop_id=f"{prefix}-{index:05d}",
            camera=cameras[index % len(cameras)],
            class_name=chooser.choice(CLASSES),
            captured_at=start + timedelta(minutes=index),
        )
        header = new_crop_header(
            jpeg=jpeg,
            site="plant-a",
            camera=crop.camera,
            captured_at=crop.captured_at,
            detection=Detection(
                class_name=crop.class_name,
                class_id=CLASSES.index(crop.class_name),
                score=round(chooser.uniform(0.3, 0.99), 3),
                box=box,
                frame_width=width,
                frame_height=height,
            ),
            provenance=Provenance(
                model_sha256="5e" * 32, config_hash="cfg-7f3a", agent_version="0.1.0"
            ),
            crop_id=crop.crop_id,
            sent_at=crop.captured_at + timedelta(milliseconds=300),
            track_id=index % 17,
        )
        stored = results.save_crop_results(
            header,
            jpeg_size=len(jpeg),
            results=dict(_node_results(crop.class_name, chooser)),
            pipeline="default",
            pipeline_version="v3",
        )
        if stored:
            seeded.append(crop)
    return seeded


def _node_results(class_name: str, chooser: random.Random) -> Iterator[tuple[str, NodeResult]]:
    """The classifier results of a seeded crop, by node."""
    yield (
        "color",
        NodeResult(
            node="color",
            status="ok",
            output={"color": chooser.choice(COLORS), "score": round(chooser.random(), 3)},
            duration_ms=3.2,
            batch_size=8,
            plugin="shirt_color",
            version="1.2",
        ),
    )
    vehicle = class_name in ("car", "truck")
    yield (
        "vehicle",
        NodeResult(
            node="vehicle",
            status="ok" if vehicle else "skipped",
            output={"label": chooser.choice(VEHICLES), "score": 0.81} if vehicle else {},
            reason="" if vehicle else "condition false: class in [car, truck]",
            duration_ms=11.5 if vehicle else 0.0,
            batch_size=4,
            plugin="car_make_vit",
            version="0.9",
        ),
    )


@dataclass
class ReviewApi:
    """``lensflow cloud api`` serving a database in a child process, with a key per role.

    Use as a context manager; ``tokens`` maps ``viewer``/``operator``/``admin`` to keys.
    """

    folder: Path
    database_url: str | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    _server: _ApiServer | None = None

    @property
    def url(self) -> str:
        """The database URL (a SQLite file in ``folder`` unless one was given)."""
        return self.database_url or f"sqlite:///{self.folder / 'review.sqlite3'}"

    @property
    def crops(self) -> CropStore:
        """The crop store the API serves JPEGs from."""
        return CropStore(self.folder / "api-crops")

    def seed(self, count: int, **options: Any) -> list[SeededCrop]:
        """Store ``count`` crops while the API runs (see :func:`seed_crops` for ``options``)."""
        engine = create_engine_for(self.url)
        try:
            return seed_crops(ResultStore(engine), self.crops, count=count, **options)
        finally:
            engine.dispose()

    def __enter__(self) -> ReviewApi:
        self.folder.mkdir(parents=True, exist_ok=True)
        engine = create_engine_for(self.url)
        try:
            migrate(engine)
            keys = KeyStore(engine)
            keys.ensure_table()
            for role in ROLES:
                self.tokens[role] = keys.create(name=f"review-{role}", role=role).token
        finally:
            engine.dispose()
        self._server = _ApiServer(_api_config(self.folder, url=self.url), folder=self.folder)
        self._server.__enter__()
        self.base_url = self._server.base_url
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.__exit__()
