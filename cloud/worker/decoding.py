"""The JPEGs of a batch's new crops, made ready for the DAG.

Each is decoded, or only its header checked when no node needs pixels; a JPEG that fails
either way is a dead letter (kind ``image``), never a crash.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lensflow.cloud.processing import DecodedCrop, decode_crop_image
from lensflow.cloud.worker.intake import Delivery
from lensflow.cloud.worker.triage import Letter
from lensflow.shared.errors import ImageError
from lensflow.shared.protocol import CropMessage

DECODERS = 2
"""Threads that decode a batch's JPEGs at once."""


@dataclass(frozen=True)
class Decoded:
    """A delivery whose envelope and JPEG passed: ready for the DAG."""

    delivery: Delivery
    crop: DecodedCrop


class BatchDecoder:
    """Decodes the JPEGs of a batch on a few threads (OpenCV releases the GIL)."""

    def __init__(self, threads: int = DECODERS) -> None:
        """Start ``threads`` decoder threads."""
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="jpeg-decode")

    def decode(
        self, fresh: list[tuple[Delivery, CropMessage]], *, pixels: bool
    ) -> tuple[list[Decoded], list[Letter]]:
        """Decode (or, without ``pixels``, check the header of) each new crop's JPEG.

        Args:
            fresh: The batch's new crops, in arrival order.
            pixels: Whether some node of the pipeline reads pixels; when not, only each
                JPEG's header and end are checked, on this thread (it is cheap).

        Returns:
            The crops that passed, in order, and the dead letters of those that did not.

        """
        messages = [message for _, message in fresh]
        if pixels and len(messages) > 1:
            outcomes = list(self._pool.map(_decode_pixels, messages))
        else:
            outcomes = [_decode(message, pixels=pixels) for message in messages]
        decoded, letters = [], []
        for (delivery, message), outcome in zip(fresh, outcomes, strict=True):
            if isinstance(outcome, ImageError):
                letters.append(Letter(delivery, str(outcome), "image", message.header.crop_id))
            else:
                decoded.append(Decoded(delivery, outcome))
        return decoded, letters

    def close(self) -> None:
        """Stop the decoder threads (after the decodes under way)."""
        self._pool.shutdown(wait=True)


def _decode_pixels(message: CropMessage) -> DecodedCrop | ImageError:
    """A crop's pixels, or why its JPEG does not decode (run on a decoder thread)."""
    return _decode(message, pixels=True)


def _decode(message: CropMessage, *, pixels: bool) -> DecodedCrop | ImageError:
    """The crop ready for the DAG, or why its JPEG is refused."""
    try:
        return decode_crop_image(message.header, message.jpeg, pixels=pixels)
    except ImageError as err:
        return err
