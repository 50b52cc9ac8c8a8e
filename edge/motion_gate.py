"""The gate that decides, frame by frame, whether a camera's detector runs.

:class:`MotionGate` runs the detector on the first frame, on frames with motion (found by
:class:`~lensflow.edge.motion.MotionDetector`), while the tracker has tracks that move or are
not settled, and at least every ``check_every_s``; with ``track_interval_frames`` above 1,
what is already known to move is detected at most every that many frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lensflow.edge.motion import STILL_PAD, Box, IntBox, MotionDetector, MotionResult
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import MotionConfig

GateReason = Literal["always", "startup", "motion", "tracks", "periodic"]


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
    """Whether a motion box lies within a still object's box, padded (``STILL_PAD``, slack)."""
    pad_x = STILL_PAD * (still[2] - still[0]) + slack
    pad_y = STILL_PAD * (still[3] - still[1]) + slack
    return (
        box[0] >= still[0] - pad_x
        and box[1] >= still[1] - pad_y
        and box[2] <= still[2] + pad_x
        and box[3] <= still[3] + pad_y
    )


def _touch(box: IntBox, other: Box) -> bool:
    """Whether two ``x1, y1, x2, y2`` boxes overlap."""
    return box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]
