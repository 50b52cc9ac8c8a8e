"""Crops: cut them out of frames, encode them, judge them, and keep their upload in budget."""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cv2
import numpy as np

from shared.classifiers.base import Image
from shared.errors import ImageError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Box = tuple[int, int, int, int]

SHARPNESS_SIDE = 256  # crops are resized to this longest side before measuring sharpness
AREA_HALF = 96 * 96  # box area (px²) at which the size factor of usefulness is 0.5
SHARPNESS_HALF = 100.0  # sharpness at which the sharpness factor of usefulness is 0.5
_EPS = 1e-6  # float noise ignored: in pixels before rounding an edge outwards, in bytes of tokens


def cut_crop(
    image: Image, box: Sequence[float], *, padding: float, max_side: int
) -> tuple[Image, Box]:
    """Cut a padded box out of a frame, clipped to the frame and capped in size.

    Args:
        image: The frame, HxW or HxWxC.
        box: x1, y1, x2, y2 in frame pixels (floats allowed), x1 < x2 and y1 < y2.
        padding: Added on each side, as a fraction of the box's width (left, right) and
            height (top, bottom); 0.1 grows a 100 px wide box to 120 px.
        max_side: The crop is shrunk (INTER_AREA, aspect kept) so that its longest side is
            at most this; smaller crops are not enlarged.

    Returns:
        The crop (a copy, never a view of the frame) and its integer box in frame pixels
        (x1, y1, x2, y2; x2 and y2 exclusive), which contains the padded box where the frame
        allows.

    Raises:
        ValueError: A malformed box, padding < 0, max_side < 1, or a box outside the frame.
    """
    x1, y1, x2, y2 = _check_box(box)
    if padding < 0 or max_side < 1:
        raise ValueError(
            f"expected padding >= 0 and max_side >= 1, but got padding={padding}, "
            f"max_side={max_side}"
        )
    height, width = image.shape[:2]
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left, top = max(0, _floor(x1 - pad_x)), max(0, _floor(y1 - pad_y))
    right, bottom = min(width, _ceil(x2 + pad_x)), min(height, _ceil(y2 + pad_y))
    if right <= left or bottom <= top:
        raise ValueError(
            f"expected a box overlapping the {width}x{height} frame, but got {list(box)}"
        )
    crop = image[top:bottom, left:right]
    longest = max(bottom - top, right - left)
    if longest <= max_side:
        return crop.copy(), (left, top, right, bottom)
    scale = max_side / longest
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return resized.astype(np.uint8, copy=False), (left, top, right, bottom)


def _check_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """The box as 4 floats, or a ValueError saying what was expected."""
    values = [float(v) for v in box]
    if len(values) != 4 or not all(map(math.isfinite, values)):
        raise ValueError(f"box must be 4 finite numbers x1, y1, x2, y2, but got {list(box)}")
    x1, y1, x2, y2 = values
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"box must have x1 < x2 and y1 < y2, but got {list(box)}")
    return x1, y1, x2, y2


def _floor(value: float) -> int:
    return math.floor(value + _EPS)


def _ceil(value: float) -> int:
    return math.ceil(value - _EPS)


def encode_jpeg(image: Image, *, quality: int) -> bytes:
    """Encode BGR (or grey) pixels as JPEG.

    Args:
        image: HxW or HxWx3 uint8 pixels.
        quality: JPEG quality, 1-100.

    Returns:
        The JPEG bytes.

    Raises:
        ValueError: ``quality`` outside 1-100.
        ImageError: The pixels cannot be encoded (empty, wrong shape or type).
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1-100, but got {quality}")
    expected = "a non-empty HxW or HxWx3 uint8 image"
    got = f"shape {image.shape} {image.dtype}"
    if image.size == 0 or image.dtype != np.uint8:
        raise ImageError(f"JPEG: expected {expected}, got {got}")
    try:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as err:
        raise ImageError(f"JPEG: expected {expected}, got {got}: {err}") from err
    if not ok:
        raise ImageError(f"JPEG: OpenCV could not encode {got}")
    return buffer.tobytes()


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
