"""Motion at low resolution, for the gate that decides when a camera's detector runs.

:class:`MotionDetector` keeps a running-average background of a small grey frame (about
``frame_height`` rows) and returns the boxes of what differs from it, in frame pixels: the
scheme of Frigate's ``ImprovedMotionDetector`` (contrast stretched over recent frames, masked
pixels zeroed, blur, difference, threshold, dilate, contours; a change of most of the frame
recalibrates instead of counting as motion; a difference that persists is learnt slowly).

:class:`~lensflow.edge.motion_gate.MotionGate` uses it to say, frame by frame, whether the
detector runs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import MotionConfig

IntBox = tuple[int, int, int, int]
Box = tuple[float, float, float, float]

_CONTRAST_HISTORY = 50  # frames whose 4th/96th percentiles are averaged
_PERSIST_FRAMES = 10  # frames a difference must last before the background learns it
_CALIBRATING_ALPHA = 0.2  # background learning rate while recalibrating
_CALM_FRACTION = 0.05  # below this fraction in motion (and few boxes) calibration ends
_CALM_BOXES = 4
_KERNEL = np.ones((3, 3), np.uint8)  # OpenCV's default dilation kernel
STILL_PAD = 0.15  # a still object's own motion may reach this fraction of its size beyond it


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one frame showed against the background.

    Attributes:
        boxes: Motion boxes ``x1, y1, x2, y2`` in frame pixels.
        fraction: Fraction of the low-resolution frame inside motion contours.
        calibrating: The background is (re)learning the scene; the boxes are not reliable.
        fresh: The background was (re)started from this frame (first frame, new size).
    """

    boxes: tuple[IntBox, ...]
    fraction: float
    calibrating: bool
    fresh: bool


class MotionDetector:
    """Finds motion in one camera's frames against a running-average background.

    Feed it every frame of the camera, in order. Frames are BGR or grey ``uint8`` arrays;
    a frame of another size than the previous one restarts the background.

    Args:
        config: Threshold, contour area, frame height, contrast, learning rate and masks.
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._shape: tuple[int, int] | None = None  # full frame height, width
        self._size = (0, 0)  # low-resolution width, height
        self._scale = (1.0, 1.0)  # frame pixels per low-resolution pixel, x and y
        self._step = 1  # whole-factor reduction before the resize to the small size
        self._mask: np.ndarray | None = None  # True where motion is ignored
        self._background = np.zeros((1, 1), np.float32)
        self._contrast: deque[tuple[float, float]] = deque(maxlen=_CONTRAST_HISTORY)
        self._persisting = 0  # consecutive frames with motion
        self._last = np.zeros((1, 1), np.uint8)  # the last frame, as compared
        self._binary: np.ndarray = np.zeros((1, 1), np.uint8)  # last frame's motion pixels
        self.calibrating = False

    def detect(self, image: Image) -> MotionResult:
        """Compare one frame with the background, then let the background learn from it.

        Args:
            image: The frame, ``H x W x 3`` BGR or ``H x W`` grey, ``uint8``.

        Returns:
            The motion boxes of the frame and the detector's state.
        """
        fresh = image.shape[:2] != self._shape
        if fresh:
            self._start(image.shape[0], image.shape[1])
        small = self._small(image)
        self._last = small
        if fresh:
            self._background = small.astype(np.float32)
            self._binary = np.zeros_like(small)
            return MotionResult((), 0.0, self.calibrating, fresh=True)
        delta = cv2.absdiff(small, cv2.convertScaleAbs(self._background))
        _, binary = cv2.threshold(delta, self.config.threshold, 255, cv2.THRESH_BINARY)
        dilated = cv2.dilate(binary, _KERNEL, iterations=1)
        self._binary = dilated
        contours, _ = cv2.findContours(dilated, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes, total_area = [], 0.0
        for contour in contours:
            area = float(cv2.contourArea(contour))
            total_area += area
            if area > self.config.contour_area:
                x, y, w, h = cv2.boundingRect(contour)
                boxes.append(self._to_frame(x, y, w, h))
        fraction = total_area / float(self._size[0] * self._size[1])
        if fraction < _CALM_FRACTION and len(boxes) <= _CALM_BOXES:
            self.calibrating = False
        if fraction > self.config.lightning_threshold:
            self.calibrating = True
        self._learn(small, moving=bool(boxes))
        return MotionResult(tuple(boxes), fraction, self.calibrating, fresh=False)

    @property
    def pixel_size(self) -> float:
        """How far blur and dilation spread a motion box beyond what moved, frame pixels."""
        return 2.0 * max(self._scale)

    def uncovered(self, boxes: Sequence[IntBox], known: Sequence[Box]) -> int:
        """The most motion pixels of one of ``boxes`` that lie outside every ``known`` box.

        Counted in low-resolution pixels on the last frame given to :meth:`detect` (the
        unit of ``contour_area``); ``known`` boxes are padded as a still object's
        (``STILL_PAD`` of their size and :attr:`pixel_size`).

        Args:
            boxes: Motion boxes of the last frame, frame pixels.
            known: Boxes whose motion is accounted for (followed objects, motion the
                detector looked at), frame pixels.
        """
        if not boxes:
            return 0
        sx, sy = self._scale
        height, width = self._binary.shape[:2]
        outside = self._binary > 0
        if known:
            outside = outside.copy()
            slack = self.pixel_size
            for x1, y1, x2, y2 in known:
                pad_x, pad_y = STILL_PAD * (x2 - x1) + slack, STILL_PAD * (y2 - y1) + slack
                a, b = max(0, int((x1 - pad_x) / sx)), max(0, int((y1 - pad_y) / sy))
                c = min(width, math.ceil((x2 + pad_x) / sx))
                d = min(height, math.ceil((y2 + pad_y) / sy))
                outside[b:d, a:c] = False
        most = 0
        for x1, y1, x2, y2 in boxes:  # boxes from _to_frame: round back, not down
            a, b = max(0, round(x1 / sx)), max(0, round(y1 / sy))
            c, d = min(width, math.ceil(x2 / sx)), min(height, math.ceil(y2 / sy))
            most = max(most, int(np.count_nonzero(outside[b:d, a:c])))
        return most

    def absorb(self, boxes: Sequence[IntBox]) -> None:
        """Make the last frame the background inside ``boxes`` (frame pixels).

        For motion the detector found nothing in (a ghost where a still object left, a
        shadow): it stops being motion at once instead of fading in over many frames.
        """
        sx, sy = self._scale
        height, width = self._background.shape[:2]
        for x1, y1, x2, y2 in boxes:
            a, b = max(0, int(x1 / sx) - 1), max(0, int(y1 / sy) - 1)
            c, d = min(width, int(x2 / sx) + 2), min(height, int(y2 / sy) + 2)
            self._background[b:d, a:c] = self._last[b:d, a:c]

    def _start(self, height: int, width: int) -> None:
        """Size the low-resolution frame and rasterise the masks for a frame size."""
        small_h = min(self.config.frame_height, height)
        small_w = max(1, round(width * small_h / height))
        self._shape, self._size = (height, width), (small_w, small_h)
        self._scale = (width / small_w, height / small_h)
        # the largest whole factor that divides the frame and leaves it above the small size
        self._step = max(
            (
                k
                for k in range(1, min(height // small_h, width // small_w) + 1)
                if height % k == 0 and width % k == 0
            ),
            default=1,
        )
        self._contrast.clear()
        self._persisting = 0
        self.calibrating = False
        self._mask = None
        if self.config.masks:
            raster = np.zeros((small_h, small_w), np.uint8)
            for polygon in self.config.masks:
                points = np.array(
                    [(x / self._scale[0], y / self._scale[1]) for x, y in polygon], np.float32
                )
                cv2.fillPoly(raster, [np.round(points).astype(np.int32)], 1)
            self._mask = raster.astype(bool)

    def _small(self, image: Image) -> np.ndarray:
        """The frame as a small, contrast-stretched, masked and blurred grey image."""
        if image.ndim == 3 and image.shape[2] == 3:
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        else:  # grey already, H x W or H x W x 1
            grey = image.reshape(image.shape[0], image.shape[1])
        if self._step > 1:  # an exact integer reduction first: OpenCV's fast area average
            height, width = grey.shape[:2]
            grey = cv2.resize(
                grey, (width // self._step, height // self._step), interpolation=cv2.INTER_AREA
            )
        small = cv2.resize(grey, self._size, interpolation=cv2.INTER_AREA)
        if self.config.improve_contrast:
            small = self._stretch(small)
        if self._mask is not None:
            small[self._mask] = 0  # the same in the background: masked pixels never differ
        blurred: np.ndarray = cv2.GaussianBlur(small, (3, 3), 0)
        return blurred

    def _stretch(self, small: np.ndarray) -> np.ndarray:
        """Stretch grey levels between the recent average 4th and 96th percentiles."""
        seen = small if self._mask is None else small[~self._mask]  # masked pixels say nothing
        if seen.size == 0:
            return small
        low, high = (float(v) for v in np.percentile(seen, (4, 96)))
        if low < high:  # a single-colour frame says nothing about the scene's contrast
            self._contrast.append((low, high))
        if not self._contrast:
            return small
        avg_low, avg_high = (float(v) for v in np.mean(np.array(self._contrast), axis=0))
        if avg_high - avg_low < 1.0:
            return small
        clipped = np.clip(small.astype(np.float32), avg_low, avg_high)
        stretched: np.ndarray = ((clipped - avg_low) * (255.0 / (avg_high - avg_low))).astype(
            np.uint8
        )
        return stretched

    def _learn(self, small: np.ndarray, *, moving: bool) -> None:
        """Blend the frame into the background; a difference is learnt once it persists."""
        alpha = _CALIBRATING_ALPHA if self.calibrating else self.config.frame_alpha
        if moving:
            self._persisting += 1
            if self._persisting < _PERSIST_FRAMES:
                return
        else:
            self._persisting = 0
        cv2.accumulateWeighted(small, self._background, alpha)

    def _to_frame(self, x: int, y: int, w: int, h: int) -> IntBox:
        """A low-resolution ``x, y, w, h`` rectangle as a box in frame pixels."""
        sx, sy = self._scale
        return (int(x * sx), int(y * sy), int((x + w) * sx), int((y + h) * sy))
