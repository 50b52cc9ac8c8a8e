"""Real review data: the demo's detector and classifier DAG run over the sample photos and clip.

Where :func:`tests.support.review_data.seed_crops` stores random windows of the sample photos
with made-up classes (fast: the review benchmark seeds 100k rows), :func:`seed_detected_crops`
stores what the demo's pipeline really produces: the offline person detector (``lensflow
demo``'s edge detector, OpenVINO INT8, classes ``Normal``/``Fall``) finds people in the
sample photos, varied views of them and frames of the sample clip; each detection is cut and
encoded as the edge does (:func:`~lensflow.shared.crops.cut_crop`,
:func:`~lensflow.shared.crops.encode_jpeg`)
and goes through the demo's classifier DAG (``configs/demo/pipeline.yaml``: shirt colour,
vehicle type where the class is a vehicle, embeddings) with the cloud worker's own
:class:`~lensflow.cloud.processing.CropProcessor`, which stores the crops, the results and the
embeddings (under the DAG's ``embedding`` node, :data:`EMBEDDING_NODE`).

Models come from the model cache (``var/models``), fetched and exported on first use as the
demo does (:func:`lensflow.demo.prepare.prepare_models`).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import yaml

from lensflow.cloud.ingest import lensflow_version
from lensflow.cloud.processing import CropProcessor, DecodedCrop, decode_crop_image
from lensflow.cloud.storage import CropStore, ResultStore
from lensflow.demo.prepare import (
    DEMO_CONFIGS,
    PHOTOS_CAMERA,
    VIDEO_CAMERA,
    DemoError,
    DemoOptions,
    prepare_models,
)
from lensflow.edge.filters import DetectionFilter
from lensflow.edge.sample_video import make_sample_video
from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import default_registry
from lensflow.shared.config.edge import EdgeConfig, config_hash
from lensflow.shared.crops import cut_crop, encode_jpeg, wire_detection
from lensflow.shared.detectors.base import Detection
from lensflow.shared.detectors.factory import load_configured_detector
from lensflow.shared.images import read_image, sample_image_paths
from lensflow.shared.paths import shipped_config
from lensflow.shared.protocol import Provenance, new_crop_header
from lensflow.shared.protocol.messages import uuid7
from tests.support.review_data import T0, SeededCrop

logger = logging.getLogger(__name__)

EMBEDDING_NODE = "embedding"
"""The demo DAG's embeddings node: the node whose vectors the API searches."""
EMBEDDING_DIM = 1280
"""Length of the ``embeddings`` plugin's vectors (EfficientNet-Lite0 pooled features)."""
PIPELINE = f"{DEMO_CONFIGS}/pipeline.yaml"
"""The demo's classifier DAG, a shipped config."""
_BATCH = 16  # crops per DAG call


@dataclass(frozen=True)
class Frame:
    """One frame a camera saw."""

    camera: str
    image: Image
    captured_at: datetime


def demo_frames(
    *, views: int = 24, clip_frames: int = 60, every: int = 4, start: datetime = T0
) -> list[Frame]:
    """The demo's inputs: sample photos and varied views (``photos``), clip frames (``video``).

    Args:
        views: Varied views (crop, flip, brightness) of the sample photos, after the photos.
        clip_frames: Length of the pan-and-zoom clip made from the photos.
        every: Keep every ``every``-th frame of the clip.
        start: Capture time of the first frame; the others follow 20 s apart.

    Returns:
        The frames, photos first, in capture order.

    """
    from lensflow.models.export.calibration import make_calibration_set

    with tempfile.TemporaryDirectory(prefix="lensflow-review-") as tmp:
        folder = Path(tmp)
        photos = sample_image_paths()
        paths = photos + make_calibration_set(photos, folder / "views", count=views)
        images = [(PHOTOS_CAMERA, read_image(path)) for path in paths]
        clip = make_sample_video(folder / "street.mp4", frames=clip_frames)
        images += [(VIDEO_CAMERA, image) for image in _clip_frames(clip, every=every)]
    step = timedelta(seconds=20)
    return [
        Frame(camera, image, start + index * step) for index, (camera, image) in enumerate(images)
    ]


def _clip_frames(path: Path, *, every: int) -> Iterator[Image]:
    """Every ``every``-th frame of a video file."""
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            if index % every == 0:
                yield image.astype(np.uint8, copy=False)  # CV_8U already: no copy
            index += 1
    finally:
        capture.release()


def demo_edge_config(
    *, config_dir: Path | None = None, log: Callable[[str], object] = logger.info
) -> EdgeConfig:
    """The demo's edge config with its detector's exported artifact (exported on first use).

    Raises:
        DemoError: The template is unreadable or invalid.
        LensflowError: The models cannot be fetched or exported.

    """
    config_dir = config_dir or shipped_config(f"{DEMO_CONFIGS}/edge.yaml").parent
    options = DemoOptions(config_dir=config_dir)
    detector, _classifier = prepare_models(options, log)
    template = config_dir / "edge.yaml"
    try:
        data = yaml.safe_load(template.read_text(encoding="utf-8"))
        data["detector"] = {**data["detector"], "model": str(detector)}
        return EdgeConfig.model_validate(data)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise DemoError(f"expected {template} to be a valid edge config, got: {err}") from err


class CropCutter:
    """Detects, filters and cuts crops of frames exactly as the demo's edge agent does.

    Raises:
        LensflowError: The detector cannot be loaded.

    """

    def __init__(self, edge: EdgeConfig) -> None:
        """Load the config's detector and its cameras' filters."""
        self.edge = edge
        self.detector, sha256 = load_configured_detector(edge.detector)
        self.filters = {camera.name: DetectionFilter(camera.filters) for camera in edge.cameras}
        self.provenance = Provenance(
            model_sha256=sha256, config_hash=config_hash(edge), agent_version=lensflow_version()
        )

    def close(self) -> None:
        """Release the detector."""
        self.detector.close()

    def cut(self, frames: Sequence[Frame]) -> list[DecodedCrop]:
        """The crops of every kept detection of ``frames``, in frame order.

        Raises:
            ValueError: A frame's camera is not in the edge config.

        """
        crops = []
        for frame in frames:
            if frame.camera not in self.filters:
                raise ValueError(
                    f"expected a camera of the edge config {sorted(self.filters)}, "
                    f"got {frame.camera!r}"
                )
            (found,) = self.detector.detect([frame.image]).detections
            kept = self.filters[frame.camera].apply(found)
            crops += [self._crop(frame, det, index) for index, det in enumerate(kept)]
        return crops

    def _crop(self, frame: Frame, det: Detection, index: int) -> DecodedCrop:
        config = self.edge.crops
        pixels, crop_box = cut_crop(
            frame.image, det.box, padding=config.padding, max_side=config.max_side
        )
        jpeg = encode_jpeg(pixels, quality=config.jpeg_quality)
        height, width = frame.image.shape[:2]
        header = new_crop_header(
            jpeg=jpeg,
            site=self.edge.site,
            camera=frame.camera,
            captured_at=frame.captured_at,
            crop_box=crop_box,
            detection=wire_detection(det, frame_width=width, frame_height=height),
            provenance=self.provenance,
            sent_at=frame.captured_at + timedelta(milliseconds=300),
            attributes={"reason": "every_detection"},
            crop_id=stable_crop_id(frame, index),
        )
        return decode_crop_image(header, jpeg)


def seed_detected_crops(
    results: ResultStore,
    crops: CropStore,
    *,
    frames: Sequence[Frame] | None = None,
    edge: EdgeConfig | None = None,
    pipeline: Path | None = None,
) -> list[SeededCrop]:
    """Detect, cut, classify and store the crops of ``frames`` as the demo's tiers would.

    Args:
        results: Where the rows go.
        crops: Where the JPEGs go.
        frames: What the cameras saw; :func:`demo_frames` when None.
        edge: The edge config (detector, filters, crop settings); :func:`demo_edge_config`
            when None.
        pipeline: The classifier DAG the cloud worker runs; the demo's when None.

    Returns:
        The stored crops, in capture order.

    Raises:
        LensflowError: A model cannot be loaded, or the pipeline is invalid.

    """
    edge = edge if edge is not None else demo_edge_config()
    frames = frames if frames is not None else demo_frames()
    cutter = CropCutter(edge)
    try:
        decoded = cutter.cut(frames)
    finally:
        cutter.close()
    registry = default_registry().with_models(ManifestModelStore())
    dag = pipeline or shipped_config(PIPELINE)
    processor = CropProcessor.load(dag, registry=registry, results=results, crops=crops)
    seeded = []
    for at in range(0, len(decoded), _BATCH):
        batch = decoded[at : at + _BATCH]
        outcomes = processor.run(batch)
        items = [
            (crop, result, crop.header.sent_at)
            for crop, result in zip(batch, outcomes, strict=True)
            if result is not None
        ]
        stored = processor.store_many(items)
        seeded += [
            SeededCrop(
                crop_id=crop.header.crop_id,
                camera=crop.header.camera,
                class_name=crop.header.detection.class_name,
                captured_at=crop.header.captured_at.astimezone(UTC),
            )
            for (crop, _result, _at), outcome in zip(items, stored, strict=True)
            if outcome == "stored"
        ]
    logger.info("seeded %d real crops from %d frames", len(seeded), len(frames))
    return seeded


def stable_crop_id(frame: Frame, index: int) -> str:
    """A UUIDv7 of the frame's capture time whose other bits hash the frame and detection.

    Seeded runs then store the same crop ids every time, so whatever depends on them (the
    train/held-out split of a head, by ``sha256(crop_id)``) is the same in every test run.
    """
    seed = f"{frame.camera}|{frame.captured_at.isoformat()}|{index}".encode()
    return uuid7(int(frame.captured_at.timestamp() * 1000), hashlib.sha256(seed).digest())
