"""Cutting a detection's crop out of a frame and encoding it: shared by the edge and the cloud.

The edge agent crops what its detector found; the cloud's HTTP ingest crops what the server's
detector found in an uploaded image. Both must cut and encode the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import Detection
from lensflow.shared.errors import ImageError
from lensflow.shared.protocol import Detection as WireDetection

Box = tuple[int, int, int, int]
"""An integer box in frame pixels: x1, y1, x2, y2 (x2 and y2 exclusive)."""
_EPS = 1e-6  # float noise ignored in pixels before rounding an edge outwards

__all__ = ["Box", "cut_crop", "encode_jpeg"]


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


def wire_detection(det: Detection, *, frame_width: int, frame_height: int) -> WireDetection:
    """A detector's detection as the crop protocol carries it (score clamped to 0..1)."""
    x1, y1, x2, y2 = (float(v) for v in det.box)
    return WireDetection(
        class_name=det.class_name,
        class_id=det.class_id,
        score=min(1.0, max(0.0, float(det.score))),
        box=(x1, y1, x2, y2),
        frame_width=frame_width,
        frame_height=frame_height,
    )
