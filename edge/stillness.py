"""Which tracks stand still: where each track's box settled, and since when.

A motion gate needs to know which tracked objects the tracker can carry without the
detector (see :class:`lensflow.edge.tracking.ObjectTracker`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class _Settled:
    """Where a track's box settled, and since when (seconds of the tracker's clock)."""

    box: Box
    since_s: float


class StillnessWatch:
    """Notes, per track, the box it settled in; a box that leaves it settles anew.

    Args:
        after_s: A track settled this long is still.
        iou: How much a box must overlap the settled box to count as not having moved.
    """

    def __init__(self, *, after_s: float, iou: float) -> None:
        self._after_s = after_s
        self._iou = iou
        self._settled: dict[int, _Settled] = {}

    def note(self, track_id: int, box: Box, *, now_s: float) -> None:
        """Record a track's box at ``now_s``."""
        settled = self._settled.get(track_id)
        if settled is None or iou(settled.box, box) < self._iou:
            self._settled[track_id] = _Settled(box, now_s)

    def still_box(self, track_id: int, *, now_s: float) -> Box | None:
        """The box a track has stood in for ``after_s`` at ``now_s``; None if it has not."""
        settled = self._settled.get(track_id)
        if settled is None or now_s - settled.since_s < self._after_s:
            return None
        return settled.box

    def keep_only(self, track_ids: Iterable[int]) -> None:
        """Forget every track but these (the ones the tracker still holds)."""
        live = set(track_ids)
        for track_id in [tid for tid in self._settled if tid not in live]:
            del self._settled[track_id]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
