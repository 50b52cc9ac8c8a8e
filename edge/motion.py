"""Motion at low resolution, and the gate that decides when a camera's detector runs.

:class:`MotionDetector` keeps a running-average background of a small grey frame (about
``frame_height`` rows) and returns the boxes of what differs from it, in frame pixels: the
scheme of Frigate's ``ImprovedMotionDetector`` (contrast stretched over recent frames, masked
pixels zeroed, blur, difference, threshold, dilate, contours; a change of most of the frame
recalibrates instead of counting as motion; a difference that persists is learnt slowly).

:class:`MotionGate` uses it to say, frame by frame, whether the detector runs: on the first
frame, on frames with motion, while the tracker has tracks that move or are not settled, and
at least every ``check_every_s``. On the other frames the tracker carries its objects.
With ``track_interval_frames`` above 1, detection wanted only for what is already known to
move (motion within followed objects or where motion was when the detector last ran, tracks
that move) is rate-limited to every that many frames.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import MotionConfig

IntBox = tuple[int, int, int, int]
Box = tuple[float, float, float, float]
GateReason = Literal["always", "startup", "motion", "tracks", "periodic"]

_CONTRAST_HISTORY = 50  # frames whose 4th/96th percentiles are averaged
_PERSIST_FRAMES = 10  # frames a difference must last before the background learns it
_CALIBRATING_ALPHA = 0.2  # background learning rate while recalibrating
_CALM_FRACTION = 0.05  # below this fraction in motion (and few boxes) calibration ends
_CALM_BOXES = 4
_KERNEL = np.ones((3, 3), np.uint8)  # OpenCV's default dilation kernel
_STILL_PAD = 0.15  # a still object's own motion may reach this fraction of its size beyond it


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
        (``_STILL_PAD`` of their size and :attr:`pixel_size`).

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
                pad_x, pad_y = _STILL_PAD * (x2 - x1) + slack, _STILL_PAD * (y2 - y1) + slack
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


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Whether the detector runs on a frame, and why.

    Attributes:
        detect: Run the detector on this frame.
        reason: Why it runs (``always`` when gating is off); ``None`` when it does not.
        motion: The frame's motion boxes in frame pixels (empty when gating is off).
        limited: The detector was wanted for tracked objects only and rests because of
            ``track_interval_frames``: the tracker should coast them in real time.
    """

    detect: bool
    reason: GateReason | None
    motion: tuple[IntBox, ...] = ()
    limited: bool = False


_ALWAYS = GateDecision(detect=True, reason="always")


class MotionGate:
    """Decides, per frame of one camera, whether its detector runs.

    With ``config.enabled`` false every frame is detected and no motion is computed. With
    it, the detector runs on the first frame (and after a change of frame size), on frames
    with motion (not while the background recalibrates), while the tracker has tracks that
    move or are not settled, and whenever ``check_every_s`` of capture time has passed
    since it last ran. Motion that lies within a stationary object (a stopped car the
    background has not learnt yet) does not count: that object is tracked already, and
    motion reaching beyond it (it leaves, something passes) does count.

    With ``track_interval_frames`` N above 1, motion the detector has accounted for — within
    the boxes of tracks being followed, or where there was motion on the frame it last ran
    on (both padded as for still objects) — and tracks that move run the detector only when
    N frames have passed since it last ran; in between the tracker coasts the tracks. This
    rate-limits detection of what is already known to move (Frigate's ``detect.fps``), so an
    object that appears next to one is seen within N frames. Motion elsewhere (more than
    ``contour_area`` low-resolution pixels of one motion box outside those boxes: a new
    object), startup and the periodic check run it at once.

    Args:
        config: The camera's ``motion`` section.
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._motion = MotionDetector(config) if config.enabled else None
        self._last_run: datetime | None = None
        self._since_run = 0  # frames decided since the detector last ran, this one included
        self._examined: tuple[Box, ...] = ()  # motion boxes of the last frame detected

    def decide(
        self,
        image: Image,
        *,
        captured_at: datetime,
        tracks_active: bool,
        still_boxes: Sequence[Box] = (),
        tracked_boxes: Sequence[Box] = (),
        tracks_pending: bool = False,
    ) -> GateDecision:
        """Look at one frame and say whether the detector runs on it.

        Call once per frame, in capture order: the background learns from every frame.

        Args:
            image: The frame.
            captured_at: When it was captured; the clock of the periodic check.
            tracks_active: The tracker holds tracks that move or are not settled
                (:attr:`lensflow.edge.tracking.ObjectTracker.needs_detection`).
            still_boxes: Boxes of the stationary tracks
                (:attr:`lensflow.edge.tracking.ObjectTracker.stationary_boxes`).
            tracked_boxes: Boxes of the tracks being followed
                (:attr:`lensflow.edge.tracking.ObjectTracker.followed_boxes`); motion within
                them (and where motion was on the last frame detected) is rate-limited by
                ``track_interval_frames``.
            tracks_pending: A track is not confirmed yet
                (:attr:`lensflow.edge.tracking.ObjectTracker.pending`): it needs the next
                detection, so nothing is rate-limited.

        Returns:
            The decision; when it says detect, the periodic check's clock restarts.
        """
        if self._motion is None:
            return _ALWAYS
        result = self._motion.detect(image)
        self._since_run += 1
        slack = self._motion.pixel_size
        moving = [
            box for box in result.boxes if not any(_within(box, s, slack) for s in still_boxes)
        ]
        new = False
        if self.config.track_interval_frames > 1 and moving:
            known = [*tracked_boxes, *self._examined]
            new = self._motion.uncovered(moving, known) > self.config.contour_area
        reason = self._reason(
            result,
            moving=bool(moving),
            captured_at=captured_at,
            tracks_active=tracks_active,
        )
        limited = False
        if (
            reason in ("motion", "tracks")
            and not (new and reason == "motion")
            and not tracks_pending
        ):
            # wanted only for objects already followed: at most every N frames
            limited = self._since_run < self.config.track_interval_frames
            if limited:
                reason = self._periodic(captured_at)
        if reason is None:
            return GateDecision(detect=False, reason=None, motion=result.boxes, limited=limited)
        self._last_run = captured_at
        self._since_run = 0
        self._examined = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in moving)
        return GateDecision(detect=True, reason=reason, motion=result.boxes)

    def absorb_empty(self, decision: GateDecision, found: Sequence[Box]) -> None:
        """Tell the gate what the detector found on a frame it let through.

        Motion boxes that touch none of ``found`` become background at once: the detector
        looked and there was nothing of interest, so they no longer keep it running.

        Args:
            decision: The gate's decision for the frame.
            found: Boxes of what the detector found (after the camera's filters).
        """
        if self._motion is None or not decision.motion:
            return
        empty = [box for box in decision.motion if not any(_touch(box, f) for f in found)]
        self._motion.absorb(empty)

    def _reason(
        self,
        result: MotionResult,
        *,
        moving: bool,
        captured_at: datetime,
        tracks_active: bool,
    ) -> GateReason | None:
        """Why the detector should run on this frame, or ``None``."""
        if result.fresh or self._last_run is None:
            return "startup"
        if moving and not result.calibrating:
            return "motion"
        if tracks_active:
            return "tracks"
        return self._periodic(captured_at)

    def _periodic(self, captured_at: datetime) -> GateReason | None:
        """``periodic`` when ``check_every_s`` has passed since the detector last ran."""
        last = self._last_run
        if last is None:
            return "startup"
        elapsed = (captured_at - last).total_seconds()
        if elapsed >= self.config.check_every_s or elapsed < 0:  # < 0: the clock went back
            return "periodic"
        return None


def _within(box: IntBox, still: Box, slack: float) -> bool:
    """Whether a motion box lies within a still object's box, padded (``_STILL_PAD``, slack)."""
    pad_x = _STILL_PAD * (still[2] - still[0]) + slack
    pad_y = _STILL_PAD * (still[3] - still[1]) + slack
    return (
        box[0] >= still[0] - pad_x
        and box[1] >= still[1] - pad_y
        and box[2] <= still[2] + pad_x
        and box[3] <= still[3] + pad_y
    )


def _touch(box: IntBox, other: Box) -> bool:
    """Whether two ``x1, y1, x2, y2`` boxes overlap."""
    return box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]
