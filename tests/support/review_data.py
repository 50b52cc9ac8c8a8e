"""A served, seeded cloud API for the desktop review app: its tests, screenshots and benchmark.

:func:`seed_crops` stores real crops of the sample photos (JPEGs in the crop store, rows
through :class:`~lensflow.cloud.storage.ResultStore`) with classifier results of two nodes and,
given
an embedder, a real embedding per crop under the :data:`SEARCH_NODE` node (the storage layer
moves its ``vector`` into ``crop_embeddings``); :class:`ReviewApi` serves a database with
``lensflow cloud api`` in a child process, with image search over those embeddings (an exact
index), and issues a key per role (:mod:`tests.support.review_api`).

The embedder is the pipeline's own ``embeddings`` plugin (EfficientNet-Lite0, 1280-d) when
its model is there, else :class:`QuadrantColors` (12-d mean colours of the crop's quarters:
crude, but similar crops are similar in it too).

That seeding is fast (the review benchmark stores 100k rows) but its classes and labels are
made up; :meth:`tests.support.review_api.ReviewApi.seed_detected` stores real detections
instead: the demo's detector
and classifier DAG over the sample photos and clip (:mod:`tests.support.review_real`; the
screenshots use it, with ``search_node`` set to its ``embedding`` node).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import cv2
import numpy as np

from lensflow.bench.samples import crop_images
from lensflow.cloud.storage import CropStore, ResultStore
from lensflow.shared.classifiers.base import Image
from lensflow.shared.dag.engine import NodeResult
from lensflow.shared.errors import LensflowError
from lensflow.shared.protocol import Detection, Provenance, new_crop_header

logger = logging.getLogger(__name__)

T0 = datetime(2025, 1, 30, 8, 0, tzinfo=UTC)
"""Capture time of the first seeded crop; the next ones follow a minute apart."""
CAMERAS = ("gate-north", "gate-south", "dock-1")
CLASSES = ("person", "person", "car", "truck")
COLORS = ("red", "blue", "black", "white", "grey")
VEHICLES = ("sedan", "van", "pickup")
SEARCH_NODE = "embeddings"
"""The node whose stored vectors the served API searches."""
SYNC_INTERVAL_S = 0.5
"""How often the served API indexes newly stored embeddings."""
_EMBED_BATCH = 32


class CropEmbedder(Protocol):
    """Embeds crops as unit-length vectors of one model."""

    @property
    def dim(self) -> int:
        """The vector length."""
        ...

    @property
    def model(self) -> str:
        """The model's identifier (stored with each vector)."""
        ...

    def __call__(self, images: Sequence[Image]) -> np.ndarray:
        """The ``(len(images), dim)`` unit-norm float32 vectors."""
        ...


class QuadrantColors:
    """12-d embedding: the mean BGR colour of each quarter of the crop, centred, unit-norm."""

    dim = 12
    model = "quadrant-colors-1"

    def __call__(self, images: Sequence[Image]) -> np.ndarray:
        """The vectors of ``images`` (BGR)."""
        rows = []
        for image in images:
            h, w = image.shape[:2]
            top, bottom = image[: h // 2], image[h // 2 :]
            quads = [top[:, : w // 2], top[:, w // 2 :], bottom[:, : w // 2], bottom[:, w // 2 :]]
            vector = np.concatenate([q.reshape(-1, 3).mean(axis=0) - 127.5 for q in quads])
            norm = float(np.linalg.norm(vector))
            rows.append(vector / norm if norm else vector)
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)


class PluginEmbedder:
    """The pipeline's ``embeddings`` plugin (EfficientNet-Lite0 pooled features, 1280-d).

    Raises:
        LensflowError: If its model is not there (see
        :mod:`lensflow.shared.classifiers.embeddings`).

    """

    def __init__(self) -> None:
        """Load the plugin's model."""
        from lensflow.models.export.artifacts import ManifestModelStore
        from lensflow.shared.classifiers.base import validate_params
        from lensflow.shared.classifiers.embeddings import Embeddings, EmbeddingsParams
        from lensflow.shared.classifiers.model_store import CONTEXT_KEY

        context = {CONTEXT_KEY: ManifestModelStore()}  # the model resolves as in a worker
        params = validate_params(Embeddings, {}, context=context)
        assert isinstance(params, EmbeddingsParams)
        self._plugin = Embeddings(params)
        self.model: str = self._plugin.model_id
        self.dim: int = int(self._plugin.embed([np.zeros((32, 32, 3), np.uint8)]).shape[1])

    def __call__(self, images: Sequence[Image]) -> np.ndarray:
        """The vectors of ``images`` (BGR)."""
        return np.asarray(self._plugin.embed(images), dtype=np.float32)


def default_embedder() -> CropEmbedder:
    """The ``embeddings`` plugin if its model loads, else :class:`QuadrantColors`."""
    try:
        return PluginEmbedder()
    except (LensflowError, ImportError, OSError) as err:
        logger.warning("embeddings plugin not available (%s): seeding 12-d colour vectors", err)
        return QuadrantColors()


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
    embedder: CropEmbedder | None = None,
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
        embedder: Stores each crop's vector under :data:`SEARCH_NODE` (none when None).

    Returns:
        The stored crops, oldest first.

    """
    chooser = random.Random(seed)
    seeded = []
    samples = crop_images(count, seed=seed)
    vectors = _embed([image for image, _box, _frame in samples], embedder)
    for index, (image, box, (width, height)) in enumerate(samples):
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
        node_results = dict(_node_results(crop.class_name, chooser))
        if embedder is not None:
            node_results[SEARCH_NODE] = _embedding_result(vectors[index], embedder.model)
        stored = results.save_crop_results(
            header,
            jpeg_size=len(jpeg),
            results=node_results,
            pipeline="default",
            pipeline_version="v3",
        )
        if stored:
            seeded.append(crop)
    return seeded


def _embed(images: list[Image], embedder: CropEmbedder | None) -> np.ndarray:
    """The vectors of ``images``, a batch at a time (an empty array without an embedder)."""
    if embedder is None or not images:
        return np.zeros((0, 0), np.float32)
    batches = [
        embedder(images[at : at + _EMBED_BATCH]) for at in range(0, len(images), _EMBED_BATCH)
    ]
    return np.concatenate(batches)


def _embedding_result(vector: np.ndarray, model: str) -> NodeResult:
    """The :data:`SEARCH_NODE` result of a crop, as the ``embeddings`` plugin stores it."""
    return NodeResult(
        node=SEARCH_NODE,
        status="ok",
        output={"vector": vector.tolist(), "dim": int(vector.size), "model": model},
        duration_ms=9.0,
        batch_size=_EMBED_BATCH,
        plugin="embeddings",
        version="1",
    )


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
