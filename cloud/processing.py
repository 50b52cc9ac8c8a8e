"""Decode crops, run the pipeline DAG on them and store them: what every cloud path shares.

A crop is a header and its JPEG, whether it came from an edge agent (the worker's intake) or
was cut from an image uploaded over HTTP (``POST /v1/ingest``). :func:`decode_crop_image`
turns the JPEG into the pixels the DAG sees, :meth:`CropProcessor.run` runs the DAG on a
batch, and :meth:`CropProcessor.store` puts the JPEG in the crop store and the crop with its
node results in the results database, once per ``crop_id``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lensflow.cloud.storage import CropStore, ResultStore
from lensflow.cloud.storage.repository import CropEntry
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import ImageResult, Pipeline
from lensflow.shared.errors import ImageError, ServiceUnavailableError
from lensflow.shared.images import check_image_header, decode_image
from lensflow.shared.protocol import CropHeader

logger = logging.getLogger(__name__)

MAX_CROP_PIXELS = 4096 * 4096
"""A crop declaring more pixels is a dead letter before it is decoded (crops are resized to a
``max_side`` of at most 4096 by the edge and by ingest)."""

Outcome = Literal["stored", "duplicate"]
"""What a save of a crop did: stored it, or found its ``crop_id`` already stored."""


_JPEG_EOI = b"\xff\xd9"
_BLACK = np.zeros((1, 1, 3), dtype=np.uint8)


@dataclass(frozen=True)
class DecodedCrop:
    """A crop ready for the DAG: its header, its JPEG and the pixels the DAG runs on.

    When no node of the pipeline needs pixels, ``image`` is a read-only all-zero view of the
    crop's size (no memory, nothing decoded).
    """

    header: CropHeader
    jpeg: bytes
    image: Image


def decode_crop_image(header: CropHeader, jpeg: bytes, *, pixels: bool = True) -> DecodedCrop:
    """Decode a crop's JPEG; or, when no node needs its pixels, check only its header.

    Args:
        header: The crop's validated header.
        jpeg: Its JPEG bytes.
        pixels: Decode the pixels (some node reads them). When False, the JPEG must only
            start like one, declare a size within :data:`MAX_CROP_PIXELS` and end with its
            end-of-image marker; the image is then a read-only zero view of that size.

    Returns:
        The crop with its BGR pixels (or the zero view).

    Raises:
        ImageError: If the JPEG does not decode (or, without pixels, its header is invalid
            or it is cut short).

    """
    what = f"crop {header.crop_id} JPEG"
    if pixels:
        return DecodedCrop(header, jpeg, decode_image(jpeg, what=what, max_pixels=MAX_CROP_PIXELS))
    if not jpeg.startswith(b"\xff\xd8"):
        raise ImageError(f"{what}: expected a JPEG (starting ff d8), got {jpeg[:8].hex()}")
    width, height = check_image_header(jpeg, what=what, max_pixels=MAX_CROP_PIXELS)
    if not jpeg.rstrip(b"\0").endswith(_JPEG_EOI):  # some encoders pad after the marker
        raise ImageError(
            f"{what}: expected a whole JPEG ending with its end-of-image marker ff d9, got "
            f"{len(jpeg)} bytes ending {jpeg[-4:].hex()} (cut short?)"
        )
    return DecodedCrop(header, jpeg, np.broadcast_to(_BLACK, (height, width, 3)))


def dag_inputs(header: CropHeader) -> dict[str, Any]:
    """What the DAG sees as ``context['input']``: the crop's detection and its ids."""
    return {
        "detection": header.detection.model_dump(),
        "site": header.site,
        "camera": header.camera,
        "crop_id": header.crop_id,
        "track_id": header.track_id,
        "attributes": dict(header.attributes),
    }


class CropProcessor:
    """A loaded pipeline DAG and the stores its results go to.

    Args:
        pipeline: The DAG, its plugins instantiated.
        version: The pipeline's version, recorded with each crop (its YAML's sha256).
        results: The results database.
        crops: The crop JPEG store.

    """

    def __init__(
        self, pipeline: Pipeline, *, version: str, results: ResultStore, crops: CropStore
    ) -> None:
        self.pipeline = pipeline
        self.version = version
        self.results = results
        self.crops = crops

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        registry: PluginRegistry | None,
        results: ResultStore,
        crops: CropStore,
    ) -> CropProcessor:
        """Load the pipeline file (plugins, models); its sha256 is the pipeline version.

        Args:
            path: The pipeline YAML.
            registry: Where its plugin classes are resolved; the default when None.
            results: The results database.
            crops: The crop JPEG store.

        Returns:
            The processor.

        Raises:
            ConfigError: If the pipeline file is invalid.
            OSError: If it cannot be read.

        """
        compiled = load_pipeline(path, registry=registry)
        version = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return cls(Pipeline(compiled), version=version, results=results, crops=crops)

    @property
    def name(self) -> str:
        """The pipeline's name, recorded with each crop."""
        return self.pipeline.name

    def run(self, crops: Sequence[DecodedCrop]) -> list[ImageResult | None]:
        """Run the DAG on a batch; if the engine itself raises, on each crop alone.

        The engine isolates a failing node (its result says ``error``); an exception out of
        the engine is a bug, not bad input, so the batch is retried crop by crop. An inference
        service that is down is neither: it propagates, and no crop gets a result.

        Args:
            crops: Decoded crops.

        Returns:
            Each crop's result, in order; None for a crop the engine raised on (logged).

        Raises:
            ServiceUnavailableError: If a node's inference service is down (the caller
                retries the batch once it is back).

        """
        images = [crop.image for crop in crops]
        inputs = [dag_inputs(crop.header) for crop in crops]
        try:
            return list(self.pipeline.run_batch(images, inputs=inputs))
        except ServiceUnavailableError:
            raise
        except Exception:  # see above: logged, then each crop alone
            logger.exception("pipeline failed on a batch of %d; running one by one", len(crops))
        results: list[ImageResult | None] = []
        for image, meta in zip(images, inputs, strict=True):
            try:
                results.append(self.pipeline.run(image, inputs=meta))
            except ServiceUnavailableError:
                raise
            except Exception:
                logger.exception("pipeline failed on crop_id=%s", meta["crop_id"])
                results.append(None)
        return results

    def store(self, crop: DecodedCrop, result: ImageResult, *, received_at: datetime) -> Outcome:
        """Put the JPEG in the crop store, then the crop and its results in the database.

        Args:
            crop: The crop.
            result: The DAG's result for it.
            received_at: When it arrived (aware).

        Returns:
            ``stored``, or ``duplicate`` when its ``crop_id`` was stored before.

        Raises:
            StorageError: If the JPEG or the results cannot be written.

        """
        return self.store_many([(crop, result, received_at)])[0]

    def write_jpegs(self, crops: Sequence[DecodedCrop]) -> list[str]:
        """Put the crops' JPEGs in the crop store (concurrently; durable when this returns).

        A worker starts this for a batch before its DAG runs (:meth:`store_many` then waits
        for it): the crop store's writes overlap the DAG and the previous batch's commit.

        Returns:
            Their sha256s, in order.

        Raises:
            StorageError: If a JPEG cannot be written.

        """
        return self.crops.put_many([(crop.jpeg, crop.header.jpeg_sha256) for crop in crops])

    def store_many(
        self,
        items: Sequence[tuple[DecodedCrop, ImageResult, datetime]],
        *,
        written: Future[list[str]] | None = None,
    ) -> list[Outcome]:
        """Store a batch: its JPEGs (written concurrently), then all its rows in one commit.

        The rows are committed only once every JPEG is durable, so a stored crop always has
        its JPEG.

        Args:
            items: ``(crop, result, received_at)`` triples.
            written: The batch's :meth:`write_jpegs`, started earlier (on another thread):
                waited for instead of writing again; written again if it failed. It may
                cover more crops than ``items`` (one that became a dead letter since): such
                a JPEG stays in the store, unreferenced.

        Returns:
            Each crop's outcome, in order.

        Raises:
            StorageError: If a JPEG or the transaction cannot be written; nothing of the
                batch's rows is committed then (JPEGs are content-addressed: a retry
                rewrites nothing).

        """
        if not items:
            return []
        if written is None or written.exception() is not None:  # exception() waits for it
            self.write_jpegs([crop for crop, _, _ in items])
        entries = [
            CropEntry(crop.header, len(crop.jpeg), result.nodes, received_at)
            for crop, result, received_at in items
        ]
        stored = self.results.save_many(entries, pipeline=self.name, pipeline_version=self.version)
        return ["stored" if was_stored else "duplicate" for was_stored in stored]
