"""Crops: judge them (sharpness, usefulness) and keep their upload in budget.

Cutting and encoding live in :mod:`lensflow.shared.crops` (the cloud's HTTP ingest cuts the same
way).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image

logger = logging.getLogger(__name__)

T = TypeVar("T")

SHARPNESS_SIDE = 256  # crops are resized to this longest side before measuring sharpness
AREA_HALF = 96 * 96  # box area (px²) at which the size factor of usefulness is 0.5
SHARPNESS_HALF = 100.0  # sharpness at which the sharpness factor of usefulness is 0.5
_EPS = 1e-6  # float noise ignored, in bytes of tokens


def sharpness(image: Image) -> float:
    """How sharp a crop is: variance of the Laplacian of its grey version.

    The crop is first resized so that its longest side is ``SHARPNESS_SIDE`` pixels, so crops
    of different sizes compare; a small crop blown up reads as soft, which it is for a
    reviewer. About 100 separates blurred from sharp for natural photos.

    Args:
        image: HxW grey or HxWx3 BGR (HxWx4 BGRA) uint8 pixels.

    Returns:
        The sharpness, >= 0; 0 for an empty image.
    """
    if image.size == 0:
        return 0.0
    grey = image
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        grey = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image, code).astype(np.uint8)
    height, width = grey.shape[:2]
    scale = SHARPNESS_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    normalised = cv2.resize(grey, size, interpolation=interpolation)
    return float(cv2.Laplacian(normalised, cv2.CV_64F).var())


def usefulness(score: float, area: float, sharpness: float) -> float:
    """One number to rank crops by, in [0, 1): higher is more worth sending.

    ``usefulness = score * area / (area + AREA_HALF) * sharpness / (sharpness + SHARPNESS_HALF)``

    Each factor lies in [0, 1) and grows with its input without ever saturating: a confident,
    large, sharp crop beats one that lacks any of the three, a bigger box is always a little
    better, and a factor halves the product at ``AREA_HALF`` (96x96 px) or ``SHARPNESS_HALF``.
    Negative inputs count as 0.

    Args:
        score: Detector confidence, 0-1.
        area: Box area in frame pixels.
        sharpness: From :func:`sharpness`.

    Returns:
        The usefulness.
    """
    score, area, sharp = max(0.0, score), max(0.0, area), max(0.0, sharpness)
    return score * area / (area + AREA_HALF) * sharp / (sharp + SHARPNESS_HALF)


@dataclass(order=True)
class _Waiting(Generic[T]):
    """A waiting item, ordered most useful first, then oldest first."""

    rank: float  # -usefulness
    seq: int
    size: int = field(compare=False)
    item: T = field(compare=False)


class ByteBudget(Generic[T]):
    """A per-camera token bucket on upload bytes, with a small queue that drops the least useful.

    Tokens (bytes) refill at ``rate_bytes_per_s`` up to ``burst_bytes``; the bucket starts full.
    An offered item joins the waiting queue; waiting items leave most useful first (oldest
    first among equals) while the bucket can pay for them. An item larger than the bucket
    leaves when the bucket is full, leaving it in debt, so the average rate holds. Beyond
    ``max_waiting`` the least useful waiting items are dropped. Not thread-safe: one per
    camera thread.

    Args:
        rate_bytes_per_s: Refill rate; None: unlimited (every item passes at once).
        burst_bytes: Bucket size.
        clock: Seconds, monotonic; injected for deterministic tests.
        max_waiting: How many items may wait.
        camera: Camera name, for logs.
    """

    def __init__(
        self,
        rate_bytes_per_s: float | None,
        burst_bytes: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_waiting: int = 8,
        camera: str = "",
    ) -> None:
        if (rate_bytes_per_s is not None and rate_bytes_per_s <= 0) or burst_bytes <= 0:
            raise ValueError(
                "byte budget needs rate > 0 (or None) and burst > 0, but got "
                f"rate={rate_bytes_per_s}, burst={burst_bytes}"
            )
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, but got {max_waiting}")
        self.rate, self.burst, self.max_waiting = rate_bytes_per_s, burst_bytes, max_waiting
        self.camera = camera
        self._clock = clock
        self._tokens = burst_bytes
        self._last = clock()
        self._waiting: list[_Waiting[T]] = []
        self._seq = 0
        self.sent = self.sent_bytes = self.dropped = self.dropped_bytes = 0

    @property
    def waiting(self) -> int:
        """How many items wait for tokens."""
        return len(self._waiting)

    @property
    def tokens(self) -> float:
        """Bytes that may be sent now (negative while in debt), refilled to the current time."""
        self._refill()
        return self._tokens

    def offer(self, item: T, *, size: int, usefulness: float) -> list[T]:
        """Offer an item for upload.

        Args:
            item: What to send.
            size: Its size in bytes.
            usefulness: Its rank (higher is kept longer); e.g. from :func:`usefulness`.

        Returns:
            The items that may be sent now, in order: this one and/or waiting ones.

        Raises:
            ValueError: A negative size or a usefulness that is not a finite number.
        """
        if size < 0 or not math.isfinite(usefulness):
            raise ValueError(
                f"expected size >= 0 and a finite usefulness, got {size}, {usefulness}"
            )
        if self.rate is None:
            self._count_sent(size)
            return [item]
        bisect.insort(self._waiting, _Waiting(-usefulness, self._seq, size, item))
        self._seq += 1
        released = self.poll()
        while len(self._waiting) > self.max_waiting:
            self._drop(self._waiting.pop())
        return released

    def poll(self) -> list[T]:
        """The waiting items that the tokens refilled since the last call can pay for."""
        self._refill()
        released: list[T] = []
        while self._waiting and self._tokens + _EPS >= min(self._waiting[0].size, self.burst):
            head = self._waiting.pop(0)
            self._tokens -= head.size
            self._count_sent(head.size)
            released.append(head.item)
        return released

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now

    def _count_sent(self, size: int) -> None:
        self.sent += 1
        self.sent_bytes += size

    def _drop(self, waiting: _Waiting[T]) -> None:
        self.dropped += 1
        self.dropped_bytes += waiting.size
        logger.info(
            "camera %s: byte budget dropped a %d-byte crop of usefulness %.3f (%d dropped)",
            *(self.camera, waiting.size, -waiting.rank, self.dropped),
        )
