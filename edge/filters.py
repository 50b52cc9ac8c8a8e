"""Which detections are interesting enough to track and send.

A :class:`DetectionFilter` is compiled once from a camera's
:class:`~lensflow.shared.config.edge.FilterConfig` and then applied to every frame's detections. The
checks run in a fixed order — class, score, area, zone, mask — and a dropped detection is
counted under the first check it fails, so the counters add up to the number dropped.

Zones and masks place an object by its box's bottom-centre point (where it stands on the
ground), tested against every polygon at once with an even-odd ray cast in numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from lensflow.shared.config.edge import FilterConfig, Point
from lensflow.shared.detectors.base import Detection

DropReason = Literal["class", "score", "area", "zone", "mask"]
DROP_REASONS: tuple[DropReason, ...] = ("class", "score", "area", "zone", "mask")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class DetectionFilter:
    """Keeps the detections a camera's filter config finds interesting, counting the rest.

    Args:
        config: The camera's filters: class allow-list with per-class min scores (empty: every
            class), the default min score, the box area range in px², zones (keep only objects
            standing in one) and masks (ignore objects standing in one).

    Raises:
        ValueError: A mask has fewer than 3 points.

    Example:
        ``kept = DetectionFilter(camera.filters).apply(detections)``
    """

    def __init__(self, config: FilterConfig) -> None:
        self.config = config
        self._class_min_score = {name: rule.min_score for name, rule in config.classes.items()}
        self._zones = [
            (zone.name, _polygon(zone.points, what=f"zone {zone.name!r}")) for zone in config.zones
        ]
        self._masks = [_polygon(points, what=f"mask {i}") for i, points in enumerate(config.masks)]
        self._dropped: dict[DropReason, int] = dict.fromkeys(DROP_REASONS, 0)
        self._last_dropped: dict[DropReason, int] = dict.fromkeys(DROP_REASONS, 0)

    @property
    def dropped(self) -> Mapping[DropReason, int]:
        """Detections dropped since this filter was made, by reason (every reason present)."""
        return dict(self._dropped)

    @property
    def last_dropped(self) -> Mapping[DropReason, int]:
        """Detections dropped by the latest :meth:`apply` call, by reason (for metrics)."""
        return dict(self._last_dropped)

    def apply(self, detections: Sequence[Detection]) -> list[Detection]:
        """Keep the detections that pass every check, in their original order.

        Args:
            detections: One frame's detections, boxes in frame pixels.

        Returns:
            The detections kept. Each one dropped is counted in :attr:`dropped` and
            :attr:`last_dropped` under the first check it failed.
        """
        if not detections:
            self._last_dropped = dict.fromkeys(DROP_REASONS, 0)
            return []
        boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        remaining = np.ones(len(detections), dtype=np.bool_)
        last: dict[DropReason, int] = {}
        for reason, passed in self._checks(detections, boxes):
            failed = remaining & ~passed
            last[reason] = int(np.count_nonzero(failed))
            self._dropped[reason] += last[reason]
            remaining &= passed
        self._last_dropped = last
        return [det for det, keep in zip(detections, remaining, strict=True) if keep]

    def zone_of(self, detection: Detection) -> str | None:
        """The name of the first zone (config order) the detection's bottom-centre is in.

        Args:
            detection: A detection, box in frame pixels.

        Returns:
            The zone's name, or None when no zone is configured or the object is in none.
        """
        point = bottom_centres(np.array([detection.box], dtype=np.float64))
        for name, polygon in self._zones:
            if points_in_polygon(point, polygon)[0]:
                return name
        return None

    def _checks(
        self, detections: Sequence[Detection], boxes: FloatArray
    ) -> list[tuple[DropReason, BoolArray]]:
        """Each check's pass/fail per detection, in the order drops are attributed."""
        names = [d.class_name for d in detections]
        allow = self._class_min_score
        allowed = np.array([not allow or name in allow for name in names], dtype=np.bool_)
        scores = np.array([d.score for d in detections], dtype=np.float64)
        default = self.config.min_score
        min_scores = np.array([self._class_min_score.get(name, default) for name in names])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        area_ok = areas >= self.config.min_area
        if self.config.max_area is not None:
            area_ok &= areas <= self.config.max_area
        feet = bottom_centres(boxes)
        in_zone = self._inside_any([polygon for _, polygon in self._zones], feet, empty=True)
        in_mask = self._inside_any(self._masks, feet, empty=False)
        return [
            ("class", allowed),
            ("score", scores >= min_scores),
            ("area", area_ok),
            ("zone", in_zone),
            ("mask", ~in_mask),
        ]

    @staticmethod
    def _inside_any(
        polygons: Sequence[FloatArray], points: FloatArray, *, empty: bool
    ) -> BoolArray:
        """Whether each point is inside at least one polygon; ``empty`` when there are none."""
        if not polygons:
            return np.full(len(points), empty, dtype=np.bool_)
        inside = np.zeros(len(points), dtype=np.bool_)
        for polygon in polygons:
            inside |= points_in_polygon(points, polygon)
        return inside


def bottom_centres(boxes: FloatArray) -> FloatArray:
    """The bottom-centre point ``(x, y)`` of each ``x1, y1, x2, y2`` box, shape ``(N, 2)``.

    Args:
        boxes: Boxes in pixels, shape ``(N, 4)``.

    Returns:
        Points in pixels, shape ``(N, 2)``.
    """
    return np.stack(((boxes[:, 0] + boxes[:, 2]) / 2.0, boxes[:, 3]), axis=1)


def points_in_polygon(points: FloatArray, polygon: FloatArray) -> BoolArray:
    """Whether each point lies inside a polygon (even-odd rule), all points at once.

    A point exactly on an edge may land on either side; sub-pixel precision at the border
    does not matter for a zone drawn by hand.

    Args:
        points: Points ``(x, y)``, shape ``(N, 2)``.
        polygon: The polygon's vertices in order, shape ``(M, 2)`` with M >= 3; it closes
            itself (the last vertex joins the first).

    Returns:
        One bool per point, shape ``(N,)``.
    """
    x, y = points[:, 0:1], points[:, 1:2]  # (N, 1): broadcast against the M edges
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)  # the edge spans the point's row (never a flat edge)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = np.count_nonzero(straddles & (x < crossing_x), axis=1)
    result: BoolArray = crossings % 2 == 1
    return result


def _polygon(points: Sequence[Point], *, what: str) -> FloatArray:
    """Config points as an ``(M, 2)`` float array, checked to be a polygon."""
    if len(points) < 3:
        raise ValueError(
            f"{what} must have at least 3 points [[x, y], ...], but got {len(points)}: "
            f"{list(points)}"
        )
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)
