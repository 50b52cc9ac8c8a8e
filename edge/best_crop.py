"""Which frame of each track to send: the best crop per track, or every detection.

:class:`BestCropSelector` decides, per camera, which tracked detections (from
:class:`lensflow.edge.tracking.ObjectTracker`) become crops: the most useful frame of each
track when the track ends (and periodically for long tracks), or every detection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from lensflow.edge.tracking import Box, TrackedDetection
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CropConfig
from lensflow.shared.detectors.base import Detection

logger = logging.getLogger(__name__)

EDGE_MARGIN_PX = 2.0
"""A box this close to the frame's edge (pixels) counts as cut off by it ..."""
EDGE_MARGIN_FRACTION = 0.005
"""... or this close, as a fraction of the frame's longer side, when that is more."""
WHOLE_OVER_CUT_OFF = 0.5
"""A whole crop replaces a cut-off one of its track when at least this fraction as useful."""

EmitReason = Literal["track_end", "periodic", "every_detection", "flush"]
QualityFn = Callable[[Image, Box, float], float]
"""``quality(image, box, score) -> float``: how useful a crop of ``box`` would be; higher wins."""


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
    cut_off: bool = False  # the box touches the frame's edge: the object may be cut off

    def beats(self, other: CropCandidate) -> bool:
        """Whether this is a better crop of its track than ``other``.

        A crop whose box touches the frame's edge (an object entering or leaving, cut off)
        never replaces one that does not, as in Frigate's best thumbnail; a whole one
        replaces a cut-off one unless it is far worse (under ``WHOLE_OVER_CUT_OFF`` of its
        quality: a head away from the edge does not replace a person cut by it); otherwise
        higher quality wins.
        """
        if self.cut_off and not other.cut_off:
            return False
        if other.cut_off and not self.cut_off:
            return self.quality >= WHOLE_OVER_CUT_OFF * other.quality
        return self.quality > other.quality


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


def on_edge(box: Box, size: tuple[int, int]) -> bool:
    """Whether ``box`` touches the edge of a frame of ``size`` (width, height).

    Within ``EDGE_MARGIN_PX`` or half a percent of the frame's longer side, whichever is more
    (boxes come from a detector input smaller than the frame): what it shows may be cut off.
    """
    width, height = size
    margin = max(EDGE_MARGIN_PX, EDGE_MARGIN_FRACTION * max(width, height))
    return (
        box[0] <= margin
        or box[1] <= margin
        or box[2] >= width - margin
        or box[3] >= height - margin
    )


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
            if track.best is None or candidate.beats(track.best):
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
            cut_off=on_edge(det.box, (image.shape[1], image.shape[0])),
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
