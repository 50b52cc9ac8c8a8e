"""HTTP ingest, the gateway path: whole images detected, cropped and processed in the cloud.

Each kept detection of an uploaded image becomes a crop that goes the way of the crops the
edge sends: the pipeline DAG, the crop store and the results database
(:mod:`lensflow.cloud.processing`).

:class:`IngestService` loads the server's detector and the pipeline on first use, once, under
a lock. :meth:`IngestService.ingest` blocks (detection, DAG, storage): the API calls it from a
worker thread. Every refusal is an :class:`~lensflow.cloud.ingest_checks.IngestError`, which
the API translates once into its HTTP status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from lensflow.cloud.ingest_checks import (
    IngestNotConfiguredError,
    IngestUnavailableError,
    UndecodableImageError,
)
from lensflow.cloud.processing import CropProcessor, DecodedCrop, decode_crop_image
from lensflow.cloud.storage import CropStore, ResultStore
from lensflow.cloud.worker.followed import FollowedPipeline
from lensflow.cloud.worker.versions import PipelineText
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import CloudConfig, IngestConfig
from lensflow.shared.config.edge import DetectorConfig
from lensflow.shared.crops import cut_crop, encode_jpeg, wire_detection
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.detectors.base import Detection, DetectorBackend
from lensflow.shared.detectors.factory import load_configured_detector
from lensflow.shared.errors import ImageError, LensflowError
from lensflow.shared.images import check_image_header, decode_image
from lensflow.shared.protocol import Provenance, new_crop_header

logger = logging.getLogger(__name__)

ROUTE = "/v1/ingest"
"""Where uploads arrive; dead letters name it, with the site and camera, as their topic."""

DetectorLoader = Callable[[DetectorConfig], tuple[DetectorBackend, str]]
"""Loads a detector; returns it with the sha256 of its model file."""

load_server_detector = load_configured_detector
"""Loads the ingest detector (an artifact path) with the sha256 of its model file."""


def lensflow_version() -> str:
    """The installed lensflow version (the ``agent_version`` of ingested crops)."""
    try:
        return version("lensflow")
    except PackageNotFoundError:
        return "0+unknown"


def ingest_config_hash(config: IngestConfig) -> str:
    """``http:<sha256>`` of the ingest config's canonical JSON: the crops' ``config_hash``."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "http:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Upload:
    """An image upload that passed the type and size checks."""

    data: bytes
    media_type: str
    site: str
    camera: str
    captured_at: datetime
    received_at: datetime
    uploaded_by: str


@dataclass(frozen=True)
class Ingested:
    """What an upload produced."""

    crop_ids: list[str]  # stored crops, best detection first
    detections: int  # what the detector found, before the class filter and the cap
    failed: int  # crops the pipeline raised on (dead letters)
    frame_width: int
    frame_height: int
    provenance: Provenance
    pipeline_name: str
    pipeline_version: str


@dataclass(frozen=True)
class _Loaded:
    """The detector and the pipeline, once loaded."""

    detector: DetectorBackend
    provenance: Provenance
    processor: CropProcessor


class IngestService:
    """Detects, crops, classifies and stores uploaded images.

    Args:
        config: The cloud config; its ``ingest`` section may be absent (then every upload is
            refused with :class:`IngestNotConfiguredError`).
        results: The results database.
        crops: The crop JPEG store.
        registry: Where the pipeline's plugin classes are resolved; the default when None.
        load: Loads the detector; :func:`load_server_detector` by default.

    """

    def __init__(
        self,
        config: CloudConfig,
        *,
        results: ResultStore,
        crops: CropStore,
        registry: PluginRegistry | None = None,
        load: DetectorLoader = load_server_detector,
    ) -> None:
        self._cloud = config
        self._results = results
        self._crops = crops
        self._registry = registry
        self._load = load
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._followed = FollowedPipeline(
            config.pipeline,
            engine=results.engine,
            registry=registry,
            poll_s=config.worker.version_poll_s,
        )

    @property
    def config(self) -> IngestConfig:
        """The ``ingest`` section.

        Raises:
            IngestNotConfiguredError: If the cloud config has none.

        """
        if self._cloud.ingest is None:
            raise IngestNotConfiguredError(
                "ingest is not configured: expected an 'ingest' section (with a detector) in "
                "the cloud config, got none"
            )
        return self._cloud.ingest

    @property
    def workers(self) -> int:
        """How many images may be processed at once (1 when not configured)."""
        return self._cloud.ingest.workers if self._cloud.ingest is not None else 1

    def ingest(self, upload: Upload) -> Ingested:
        """Detect objects in the image, crop each kept one, run the DAG and store the crops.

        Args:
            upload: The checked upload.

        Returns:
            The crops stored and how they were made.

        Raises:
            IngestNotConfiguredError: If there is no ``ingest`` section.
            IngestUnavailableError: If the detector or the pipeline cannot be loaded.
            UndecodableImageError: If the image declares more than ``max_image_pixels`` (checked
                before the detector loads) or does not decode; it becomes a dead letter.
            StorageError: If the database or the crop store fails.
            DetectorError: If the detector's runtime fails on the image.
            ServiceUnavailableError: If an inference server a node needs is down; nothing is
                stored and no dead letter kept (the API answers 503 ``inference_unavailable``).

        """
        start = time.perf_counter()
        self._check_header(upload)  # a bomb is refused before the detector is even loaded
        loaded = self._ready()
        image = self._decode(upload)
        found = loaded.detector.detect([image]).detections[0]
        crops = [self._crop(image, det, upload, loaded) for det in self._kept(found)]
        done = []
        for crop, result in zip(crops, loaded.processor.run(crops), strict=True):
            if result is None:
                reason = f"the pipeline raised on crop {crop.header.crop_id} (see the API log)"
                self._dead_letter(upload, reason=reason, payload=crop.jpeg)
                continue
            done.append((crop, result, upload.received_at))
        loaded.processor.store_many(done)  # one commit for the image's crops
        stored = [crop.header.crop_id for crop, _, _ in done]
        logger.info(
            "ingested site=%s camera=%s by=%s detections=%d crops=%d failed=%d ms=%.0f",
            *(upload.site, upload.camera, upload.uploaded_by, len(found), len(stored)),
            *(len(crops) - len(stored), (time.perf_counter() - start) * 1000),
        )
        return Ingested(
            crop_ids=stored,
            detections=len(found),
            failed=len(crops) - len(stored),
            frame_width=image.shape[1],
            frame_height=image.shape[0],
            provenance=loaded.provenance,
            pipeline_name=loaded.processor.name,
            pipeline_version=loaded.processor.version,
        )

    def close(self) -> None:
        """Release the detector, if it was loaded (a later upload loads it again)."""
        with self._lock:
            if self._loaded is not None:
                self._loaded.detector.close()
                self._loaded = None

    def _ready(self) -> _Loaded:
        """The detector and pipeline, loaded by the first caller while the others wait."""
        config = self.config
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load_all(config)
            elif (newer := self._followed.newer()) is not None:  # a version was activated
                self._loaded = replace(self._loaded, processor=self._processor(*newer))
            return self._loaded

    def _processor(self, pipeline: Pipeline, version: PipelineText) -> CropProcessor:
        return CropProcessor(
            pipeline, version=version.sha256, results=self._results, crops=self._crops
        )

    def _load_all(self, config: IngestConfig) -> _Loaded:
        """Load the detector, then the pipeline; a failure is an IngestUnavailableError."""
        try:
            detector, model_sha256 = self._load(config.detector)
        except LensflowError as err:
            raise IngestUnavailableError("detector", err) from err
        try:
            processor = self._processor(*self._followed.load())
        except (LensflowError, OSError) as err:  # an invalid file, a plugin that cannot load
            detector.close()
            raise IngestUnavailableError("pipeline", err) from err
        provenance = Provenance(
            model_sha256=model_sha256,
            config_hash=ingest_config_hash(config),
            agent_version=lensflow_version(),
        )
        logger.info(
            "ingest ready: model %s (sha256 %s), pipeline %s",
            *(detector.info.path, model_sha256[:12], processor.name),
        )
        return _Loaded(detector, provenance, processor)

    def _check_header(self, upload: Upload) -> None:
        """Refuse (as a dead letter) an upload whose header declares too many pixels."""
        try:
            check_image_header(
                upload.data, what=_what(upload), max_pixels=self.config.max_image_pixels
            )
        except ImageError as err:
            raise self._undecodable(upload, err) from err

    def _decode(self, upload: Upload) -> Image:
        """The upload's pixels; one that does not decode becomes a dead letter."""
        try:
            return decode_image(
                upload.data, what=_what(upload), max_pixels=self.config.max_image_pixels
            )
        except ImageError as err:
            raise self._undecodable(upload, err) from err

    def _undecodable(self, upload: Upload, err: ImageError) -> UndecodableImageError:
        """Keep a refused upload as a dead letter; the error to raise, naming it."""
        letter = self._dead_letter(upload, reason=str(err), payload=upload.data)
        return UndecodableImageError(str(err), dead_letter_id=letter)

    def _kept(self, found: Sequence[Detection]) -> list[Detection]:
        """Detections of allowed classes with a non-empty box, best first, at most max_crops."""
        allowed = set(self.config.classes)
        kept = [
            det
            for det in found
            if (not allowed or det.class_name in allowed)
            and det.box[0] < det.box[2]
            and det.box[1] < det.box[3]
        ]
        kept.sort(key=lambda det: det.score, reverse=True)
        return kept[: self.config.max_crops]

    def _crop(self, image: Image, det: Detection, upload: Upload, loaded: _Loaded) -> DecodedCrop:
        """Cut, encode and describe one detection's crop, as the edge would have sent it."""
        config = self.config
        pixels, crop_box = cut_crop(
            image, det.box, padding=config.padding, max_side=config.max_side
        )
        jpeg = encode_jpeg(pixels, quality=config.jpeg_quality)
        header = new_crop_header(
            jpeg=jpeg,
            site=upload.site,
            camera=upload.camera,
            captured_at=upload.captured_at,
            crop_box=crop_box,
            detection=wire_detection(det, frame_width=image.shape[1], frame_height=image.shape[0]),
            provenance=loaded.provenance,
            attributes={"source": "http", "uploaded_by": upload.uploaded_by},
        )
        read = loaded.processor.pipeline.needs_pixels  # as the worker: decode only if read
        return decode_crop_image(header, jpeg, pixels=read)  # the DAG sees what is stored

    def _dead_letter(self, upload: Upload, *, reason: str, payload: bytes) -> int:
        """Keep an upload (or a crop of it) that could not be processed, with the reason."""
        return self._results.save_dead_letter(
            source="http",
            topic=f"{ROUTE}/{upload.site}/{upload.camera}",
            reason=reason,
            payload=payload,
            received_at=upload.received_at,
        )


def _what(upload: Upload) -> str:
    """How errors name an upload."""
    return f"uploaded {upload.media_type} image"
