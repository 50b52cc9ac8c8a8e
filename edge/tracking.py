"""Tracks across frames, and which frame of each track to send.

:class:`ObjectTracker` gives each object a stable id with Roboflow's ``trackers`` ByteTrack
(``trackers.ByteTrackTracker``, fed ``supervision.Detections``); nothing here associates
boxes itself. Which frame of each track becomes a crop is :mod:`lensflow.edge.best_crop`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from lensflow.edge.stillness import StillnessWatch
from lensflow.shared.detectors.base import Detection

Box = tuple[float, float, float, float]

_BYTETRACK_FPS = 30.0  # ByteTrack counts its lost-track buffer in frames at 30 FPS


@dataclass(frozen=True, slots=True)
class TrackedDetection:
    """A detection and the id of the track it belongs to (ids are per tracker, from 0)."""

    detection: Detection
    track_id: int


class ObjectTracker:
    """Multi-object tracking of one camera's detections with ByteTrack (``trackers``).

    Tracking is class-agnostic: a box whose class flickers between frames (car/truck) stays
    one track. A new object gets its id on its ``minimum_consecutive_frames``-th consecutive
    frame; until then (and for a detection no track takes) it is left out of the result.

    Args:
        frame_rate: Frames per second fed to :meth:`update`; scales the Kalman motion model
            and, without timestamps, the lost-track budget.
        lost_track_s: Seconds a track survives without a detection before its id is
            retired; keep it no longer than the crop selector's ``track_lost_after_s`` so an
            id the selector has closed is not revived.
        track_activation_threshold: Lowest score that starts a new track.
        high_conf_det_threshold: Scores at or above are matched first; lower ones only
            continue existing tracks (ByteTrack's second stage). A new track needs a score at
            or above both thresholds: keep them at or below the filters' min scores, or
            detections that passed the filters are never tracked.
        minimum_iou_threshold: Lowest IoU between a track's predicted box and a detection
            for them to match.
        minimum_consecutive_frames: Frames in a row before a new track gets an id.
        stationary_after_s: A confirmed track whose box keeps an IoU of at least
            ``stationary_iou`` with where it settled for this long is stationary (see
            :attr:`needs_detection`).
        stationary_iou: How much of its settled box a stationary track must still cover.

    Frames without detection (a motion gate said no) go to :meth:`coast` instead of
    :meth:`update`: tracks neither age nor move, and the time they took is left out of the
    tracker's clock, so a still object keeps its id however long the detector rests.

    Raises:
        ValueError: ``frame_rate`` is not a positive number or ``lost_track_s`` is negative.
    """

    def __init__(
        self,
        frame_rate: float,
        *,
        lost_track_s: float = 1.0,
        track_activation_threshold: float = 0.25,
        high_conf_det_threshold: float = 0.25,
        minimum_iou_threshold: float = 0.1,
        minimum_consecutive_frames: int = 2,
        stationary_after_s: float = 2.0,
        stationary_iou: float = 0.8,
    ) -> None:
        if not math.isfinite(frame_rate) or frame_rate <= 0:
            raise ValueError(f"frame_rate must be a positive number of FPS, but got {frame_rate}")
        if not math.isfinite(lost_track_s) or lost_track_s < 0:
            raise ValueError(f"lost_track_s must be >= 0 seconds, but got {lost_track_s}")
        self._tracker = ByteTrackTracker(
            lost_track_buffer=math.ceil(lost_track_s * _BYTETRACK_FPS),
            frame_rate=frame_rate,
            track_activation_threshold=track_activation_threshold,
            minimum_consecutive_frames=minimum_consecutive_frames,
            minimum_iou_threshold=minimum_iou_threshold,
            high_conf_det_threshold=high_conf_det_threshold,
        )
        self._frame_s = 1.0 / frame_rate
        self._still = StillnessWatch(after_s=stationary_after_s, iou=stationary_iou)
        self._clock_s = 0.0  # the tracker's clock: capture time less the coasted time
        self._coasted_s = 0.0  # capture time of coasted frames, left out of the clock
        self._last_frame_at: datetime | None = None

    @property
    def needs_detection(self) -> bool:
        """Whether a frame must be detected for the tracks' sake.

        True while a track is not confirmed yet, was missed on the last detected frame
        (lost, not yet retired) or moved within ``stationary_after_s``. False with no
        tracks, or with only stationary ones: those :meth:`coast` can carry.
        """
        return any(
            t.tracker_id < 0
            or t.time_since_update > 0
            or self._still.still_box(t.tracker_id, now_s=self._clock_s) is None
            for t in self._tracker.tracks
        )

    @property
    def pending(self) -> bool:
        """Whether a track waits on the next detection to be confirmed.

        A new track needs ``minimum_consecutive_frames`` detections in a row for its id: the
        motion gate does not rate-limit detection while one waits. (A confirmed track missed
        on the last detected frame is not pending: it coasts, detected every N frames, until
        it is retired; counting it made vtest.avi detect every frame.)
        """
        return any(t.tracker_id < 0 for t in self._tracker.tracks)

    @property
    def stationary_boxes(self) -> list[Box]:
        """Boxes of the stationary tracks, where each settled.

        A track is stationary once confirmed, seen on the last detected frame and put for
        ``stationary_after_s``.
        """
        seen = [t.tracker_id for t in self._tracker.tracks if t.time_since_update == 0]
        boxes = [self._still.still_box(track_id, now_s=self._clock_s) for track_id in seen]
        return [box for box in boxes if box is not None]

    @property
    def followed_boxes(self) -> list[Box]:
        """Boxes of the confirmed tracks seen on the last detected frame (Kalman estimate).

        What the motion gate's ``track_interval_frames`` compares motion with: motion
        within these boxes belongs to objects already followed.
        """
        return [
            _box(t.get_state_bbox())
            for t in self._tracker.tracks
            if t.tracker_id >= 0 and t.time_since_update == 0
        ]

    def coast(self, *, captured_at: datetime | None = None, keep_time: bool = False) -> list[int]:
        """Carry the tracks across a frame the detector did not see.

        Tracks keep their boxes and do not age; the frame's time is left out of the
        tracker's clock (the next :meth:`update` sees one frame's gap since the last one),
        unless ``keep_time``: then it stays in, and the next :meth:`update` predicts the
        tracks' motion over the whole gap (for moving objects whose detection is only
        rate-limited, the motion gate's ``track_interval_frames``).

        Args:
            captured_at: When the frame was captured (as given to :meth:`update`).
            keep_time: Keep the frame's time in the tracker's clock.

        Returns:
            Ids of the confirmed tracks that were seen on the last detected frame, which
            the crop selector should hold (:meth:`BestCropSelector.hold`).
        """
        if captured_at is not None:
            last = self._last_frame_at
            if not keep_time and last is not None and captured_at > last:
                self._coasted_s += (captured_at - last).total_seconds()
            self._last_frame_at = captured_at
        return sorted(
            t.tracker_id
            for t in self._tracker.tracks
            if t.tracker_id >= 0 and t.time_since_update == 0
        )

    def update(
        self, detections: Sequence[Detection], *, captured_at: datetime | None = None
    ) -> list[TrackedDetection]:
        """Match one frame's detections to tracks.

        Call once per analysed frame, also with no detections (tracks age).

        Args:
            detections: The frame's (filtered) detections.
            captured_at: When the frame was captured. Give it on every call or on none:
                with it, gaps between frames (dropped or slow frames) are measured instead
                of assumed to be ``1 / frame_rate``; a time earlier than the previous one
                makes ByteTrack skip the frame (warning), so nothing is tracked in it.

        Returns:
            The detections that belong to a confirmed track, in input order, with their ids.
        """
        timestamp = None
        if captured_at is not None:
            self._last_frame_at = captured_at
            timestamp = captured_at.timestamp() - self._coasted_s
            self._clock_s = timestamp
        else:
            self._clock_s += self._frame_s
        result = self._tracker.update(_to_supervision(detections), timestamp=timestamp)
        if len(result) == 0 or result.tracker_id is None:
            self._still.keep_only(t.tracker_id for t in self._tracker.tracks)
            return []
        pairs = sorted(
            (int(index), int(track_id))
            for index, track_id in zip(result.data["index"], result.tracker_id, strict=True)
            if track_id >= 0
        )
        tracked = [TrackedDetection(detections[index], track_id) for index, track_id in pairs]
        for td in tracked:
            self._still.note(td.track_id, td.detection.box, now_s=self._clock_s)
        self._still.keep_only(t.tracker_id for t in self._tracker.tracks)
        return tracked

    def reset(self) -> None:
        """Forget every track (a new scene); ids start again from 0."""
        self._tracker.reset()
        self._still.keep_only(())


def _box(values: np.ndarray) -> Box:
    """An ``x1, y1, x2, y2`` box of floats from an array."""
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _to_supervision(detections: Sequence[Detection]) -> sv.Detections:
    """Detections as ``sv.Detections``, each carrying its input position in ``data["index"]``."""
    boxes = np.array([d.box for d in detections], dtype=np.float32).reshape(-1, 4)
    return sv.Detections(
        xyxy=boxes,
        confidence=np.array([d.score for d in detections], dtype=np.float32),
        class_id=np.array([d.class_id for d in detections], dtype=int),
        data={"index": np.arange(len(detections))},
    )
