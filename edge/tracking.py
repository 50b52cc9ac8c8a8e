"""Tracks across frames, and which frame of each track to send.

:class:`ObjectTracker` gives each object a stable id with Roboflow's ``trackers`` ByteTrack
(``trackers.ByteTrackTracker``, fed ``supervision.Detections``); nothing here associates
boxes itself. :class:`BestCropSelector` then decides, per camera, which tracked detections
become crops: the most useful frame of each track when the track ends (and periodically for
long tracks), or every detection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from lensflow.edge.stillness import StillnessWatch
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CropConfig
from lensflow.shared.detectors.base import Detection

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
EmitReason = Literal["track_end", "periodic", "every_detection", "flush"]
QualityFn = Callable[[Image, Box, float], float]
"""``quality(image, box, score) -> float``: how useful a crop of ``box`` would be; higher wins."""

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


@dataclass(frozen=True, slots=True)
class CropCandidate:
    """A tracked detection chosen to be cut and sent, with the frame it came from.

    ``image`` is a reference to the whole frame (not a copy, not cropped): cutting happens
    downstream. Frames are never written to.
    """

    track_id: int
    detection: Detection
    image: Image
    captured_at: datetime
    frame_index: int
    quality: float
    reason: EmitReason


def default_quality(image: Image, box: Box, score: float) -> float:
    """Usefulness of a crop without looking at pixels: ``score * sqrt(box area)``.

    Args:
        image: The frame (unused; part of the :data:`QualityFn` signature).
        box: The box, ``x1, y1, x2, y2`` in pixels.
        score: The detection's score.

    Returns:
        The usefulness; larger, more confident boxes win.
    """
    del image
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    return score * math.sqrt(area)


@dataclass(slots=True)
class _Track:
    """What the selector holds for one live track."""

    last_seen: datetime
    period_start: datetime  # first sighting, or the latest periodic emission
    best: CropCandidate | None  # the best since period_start; None right after an emission


class BestCropSelector:
    """Chooses which tracked detections of one camera become crops.

    With ``mode="best_per_track"`` it keeps, per live track, the candidate of highest
    ``quality`` since the track's last emission, and emits it when the track ends (not seen
    for ``track_lost_after_s`` of ``captured_at`` time: reason ``"track_end"``) or when
    ``resend_after_s`` has passed since the track began or was last sent (``"periodic"``).
    Memory is bounded by the live tracks: one candidate (a frame reference) each, and a
    track is forgotten once it ends. With ``mode="every_detection"`` every tracked
    detection is emitted at once and nothing is held.

    Use one selector per camera, fed every analysed frame in capture order, also frames with
    no detections: time only advances, and tracks only end, when a frame arrives.

    Args:
        config: Mode, ``resend_after_s`` and ``track_lost_after_s``.
        quality: ``quality(image, box, score)``, e.g. one that adds sharpness; default
            :func:`default_quality` (``score * sqrt(area)``).
    """

    def __init__(self, config: CropConfig, *, quality: QualityFn | None = None) -> None:
        self.config = config
        self._quality: QualityFn = quality if quality is not None else default_quality
        self._lost_after = timedelta(seconds=config.track_lost_after_s)
        self._resend_after = timedelta(seconds=config.resend_after_s)
        self._tracks: dict[int, _Track] = {}
        self._now: datetime | None = None

    @property
    def live_tracks(self) -> int:
        """Tracks held, each with at most one pending candidate."""
        return len(self._tracks)

    def update(
        self,
        frame_index: int,
        captured_at: datetime,
        image: Image,
        detections: Sequence[TrackedDetection],
    ) -> list[CropCandidate]:
        """Consume one frame's tracked detections; return the candidates to send now.

        Args:
            frame_index: The frame's index in its source.
            captured_at: When the frame was captured; the selector's clock.
            image: The whole frame (kept by reference while a candidate from it is pending).
            detections: The frame's tracked detections (at most one per track id).

        Returns:
            Candidates to send, in the order: ended tracks, then periodic, by track id.
        """
        self._advance_clock(captured_at)
        if self.config.mode == "every_detection":
            return [
                self._candidate(td, frame_index, captured_at, image, "every_detection")
                for td in detections
            ]
        for td in detections:
            candidate = self._candidate(td, frame_index, captured_at, image, "track_end")
            track = self._tracks.get(td.track_id)
            if track is None:
                self._tracks[td.track_id] = _Track(captured_at, captured_at, candidate)
                continue
            track.last_seen = captured_at
            if track.best is None or candidate.quality > track.best.quality:
                track.best = candidate
        return self._end_lost(captured_at) + self._resend_long(captured_at)

    def hold(self, captured_at: datetime, track_ids: Sequence[int]) -> list[CropCandidate]:
        """Consume a frame the detector did not see: the given tracks are still there.

        The tracks count as seen at ``captured_at`` (they do not end) but get no new
        candidate; other tracks age as on any frame.

        Args:
            captured_at: When the frame was captured; the selector's clock.
            track_ids: Tracks the tracker carried across the frame
                (:meth:`ObjectTracker.coast`).

        Returns:
            Candidates to send now, as from :meth:`update`.
        """
        self._advance_clock(captured_at)
        if self.config.mode == "every_detection":
            return []
        for track_id in track_ids:
            track = self._tracks.get(track_id)
            if track is not None:
                track.last_seen = captured_at
        return self._end_lost(captured_at) + self._resend_long(captured_at)

    def flush(self) -> list[CropCandidate]:
        """Emit every pending candidate (reason ``"flush"``) and forget all tracks.

        Call at the end of a stream or on shutdown.

        Returns:
            The pending candidates, by track id.
        """
        bests = [self._tracks[track_id].best for track_id in sorted(self._tracks)]
        pending = [replace(best, reason="flush") for best in bests if best is not None]
        self._tracks.clear()
        return pending

    def _candidate(
        self,
        tracked: TrackedDetection,
        frame_index: int,
        captured_at: datetime,
        image: Image,
        reason: EmitReason,
    ) -> CropCandidate:
        """A candidate of one tracked detection, its quality measured."""
        det = tracked.detection
        return CropCandidate(
            track_id=tracked.track_id,
            detection=det,
            image=image,
            captured_at=captured_at,
            frame_index=frame_index,
            quality=float(self._quality(image, det.box, det.score)),
            reason=reason,
        )

    def _end_lost(self, now: datetime) -> list[CropCandidate]:
        """Emit the best of each track unseen for ``track_lost_after_s``, and drop the track."""
        ended = sorted(
            tid for tid, t in self._tracks.items() if now - t.last_seen >= self._lost_after
        )
        emitted = []
        for track_id in ended:
            best = self._tracks.pop(track_id).best
            if best is not None:
                emitted.append(replace(best, reason="track_end"))
        return emitted

    def _resend_long(self, now: datetime) -> list[CropCandidate]:
        """Emit the best since the last emission of each track live for ``resend_after_s``."""
        emitted = []
        for track_id in sorted(self._tracks):
            track = self._tracks[track_id]
            if track.best is not None and now - track.period_start >= self._resend_after:
                emitted.append(replace(track.best, reason="periodic"))
                track.best = None
                track.period_start = now
        return emitted

    def _advance_clock(self, captured_at: datetime) -> None:
        """Move the clock on; if it went back (clock reset), re-anchor tracks to the new time."""
        if self._now is not None and captured_at < self._now:
            logger.warning(
                "crop selector: captured_at went back from %s to %s; re-anchoring %d tracks",
                self._now.isoformat(),
                captured_at.isoformat(),
                len(self._tracks),
            )
            for track in self._tracks.values():
                track.last_seen = min(track.last_seen, captured_at)
                track.period_start = min(track.period_start, captured_at)
        self._now = captured_at
