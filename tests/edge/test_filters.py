"""DetectionFilter: which detections survive a camera's filters, and why the others did not."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from lensflow.edge.filters import DROP_REASONS, DetectionFilter, points_in_polygon
from lensflow.shared.config.edge import FilterConfig
from lensflow.shared.detectors.base import Detection

# A 200 x 200 square zone; a triangle whose right edge runs from (600, 300) up to (500, 100),
# i.e. x = 525 at y = 150.
DOOR = {"name": "door", "points": [[100, 100], [300, 100], [300, 300], [100, 300]]}
RAMP = {"name": "ramp", "points": [[400, 300], [600, 300], [500, 100]]}
MASK = [[0, 0], [1000, 0], [1000, 50], [0, 50]]  # a strip along the top: a timestamp overlay

PERSONS = {"classes": {"person": {}}}
CAR_STRICT = {"min_score": 0.2, "classes": {"car": {"min_score": 0.6}}}
CAR_LAX = {"min_score": 0.8, "classes": {"car": {"min_score": 0.3}}}
MASKED_DOOR = {"zones": [DOOR], "masks": [DOOR["points"]]}


def det(
    box: tuple[float, float, float, float], *, name: str = "person", score: float = 0.9
) -> Detection:
    return Detection(class_id=0, class_name=name, score=score, box=box)


def foot_box(x: float, y: float, *, half_width: float = 20, height: float = 60) -> tuple:
    """A box whose bottom-centre is exactly (x, y)."""
    return (x - half_width, y - height, x + half_width, y)


CASES: list[tuple[str, dict[str, Any], Detection, str | None]] = [
    # (id, FilterConfig kwargs, detection, reason it is dropped, or None when kept)
    # -- class allow-list and scores
    ("no rules keep everything", {}, det((0, 0, 10, 10), name="cat"), None),
    ("class in allow-list", PERSONS, det((0, 0, 10, 10)), None),
    ("class not in allow-list", PERSONS, det((0, 0, 10, 10), name="cat"), "class"),
    ("score at default min", {"min_score": 0.5}, det((0, 0, 9, 9), score=0.5), None),
    ("score below default min", {"min_score": 0.5}, det((0, 0, 9, 9), score=0.49), "score"),
    # per-class min score wins over the default, both ways
    ("class min above default", CAR_STRICT, det((0, 0, 9, 9), name="car", score=0.55), "score"),
    ("class min below default", CAR_LAX, det((0, 0, 9, 9), name="car", score=0.35), None),
    # -- area: 10 x 10 = 100 px²; bounds are inclusive
    ("area just below min", {"min_area": 100.5}, det((0, 0, 10, 10)), "area"),
    ("area at min", {"min_area": 100}, det((0, 0, 10, 10)), None),
    ("area at max", {"max_area": 100}, det((0, 0, 10, 10)), None),
    ("area just above max", {"max_area": 99.5}, det((0, 0, 10, 10)), "area"),
    ("area inside range", {"min_area": 50, "max_area": 150}, det((0, 0, 10, 10)), None),
    # -- zones: the bottom-centre decides, not the box
    ("foot just inside the square", {"zones": [DOOR]}, det(foot_box(200, 299.5)), None),
    ("foot just below the square", {"zones": [DOOR]}, det(foot_box(200, 300.5)), "zone"),
    ("foot just left of the square", {"zones": [DOOR]}, det(foot_box(99.5, 200)), "zone"),
    ("box overlaps zone, foot outside", {"zones": [DOOR]}, det((150, 150, 250, 320)), "zone"),
    ("box mostly outside, foot inside", {"zones": [DOOR]}, det((0, 0, 390, 290)), None),
    ("foot just inside the slanted edge", {"zones": [RAMP]}, det(foot_box(524.5, 150)), None),
    ("foot just outside the slanted edge", {"zones": [RAMP]}, det(foot_box(525.5, 150)), "zone"),
    ("in the second of two zones", {"zones": [DOOR, RAMP]}, det(foot_box(500, 250)), None),
    ("in neither of two zones", {"zones": [DOOR, RAMP]}, det(foot_box(350, 250)), "zone"),
    # -- masks: the bottom-centre decides too
    ("foot just inside the mask", {"masks": [MASK]}, det((100, 0, 140, 49.5)), "mask"),
    ("foot just below the mask", {"masks": [MASK]}, det((100, 0, 140, 50.5)), None),
    ("in a zone but masked", MASKED_DOOR, det(foot_box(200, 200)), "mask"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "detection", "reason"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_one_detection_is_kept_or_dropped_for_exactly_one_reason(
    config: dict[str, Any], detection: Detection, reason: str | None
) -> None:
    # given a filter and one detection
    detection_filter = DetectionFilter(FilterConfig.model_validate(config))
    # when it is applied
    kept = detection_filter.apply([detection])
    # then it is kept, or dropped and counted under its reason only
    assert kept == ([] if reason else [detection])
    expected = {r: int(r == reason) for r in DROP_REASONS}
    assert detection_filter.last_dropped == expected
    assert detection_filter.dropped == expected


def test_a_mixed_frame_keeps_exactly_the_interesting_detections_in_order() -> None:
    # given every kind of rule, and one frame with a detection failing each of them
    config = FilterConfig.model_validate(
        {
            "classes": {"person": {"min_score": 0.5}, "car": {}},
            "min_score": 0.3,
            "min_area": 1000,
            "max_area": 20000,
            "zones": [DOOR, RAMP],
            "masks": [[[150, 250], [250, 250], [250, 320], [150, 320]]],
        }
    )
    keep_person = det(foot_box(120, 150))  # in the door, away from the mask
    keep_car = det(
        foot_box(500, 250), name="car", score=0.35
    )  # on the ramp, above the car rule (0.25)
    frame = [
        det(foot_box(200, 150), name="dog"),  # class
        keep_person,
        det(foot_box(200, 150), score=0.45),  # score: below the person rule
        det(foot_box(200, 150, half_width=5, height=50)),  # area: 10 x 50 = 500
        det(foot_box(200, 150, half_width=100, height=150)),  # area: 200 x 150 = 30000
        keep_car,
        det(foot_box(350, 150)),  # zone: between the door and the ramp
        det(foot_box(200, 280)),  # mask: foot in the masked strip of the door
        det(foot_box(200, 150), name="dog", score=0.1),  # class (first failure counts)
    ]
    detection_filter = DetectionFilter(config)

    # when the frame is filtered twice
    assert detection_filter.apply(frame) == [keep_person, keep_car]
    assert detection_filter.apply(frame) == [keep_person, keep_car]

    # then the latest call and the running totals count each drop once, by first reason
    per_frame = {"class": 2, "score": 1, "area": 2, "zone": 1, "mask": 1}
    assert detection_filter.last_dropped == per_frame
    assert detection_filter.dropped == {reason: 2 * n for reason, n in per_frame.items()}


def test_an_empty_frame_keeps_nothing_and_resets_the_latest_counts() -> None:
    detection_filter = DetectionFilter(FilterConfig(min_score=0.5))
    detection_filter.apply([det((0, 0, 9, 9), score=0.1)])

    assert detection_filter.apply([]) == []

    assert detection_filter.last_dropped == dict.fromkeys(DROP_REASONS, 0)
    assert detection_filter.dropped["score"] == 1


@pytest.mark.parametrize(
    ("zones", "foot", "expected"),
    [
        ([DOOR, RAMP], (200, 200), "door"),  # inside the first zone
        ([DOOR, RAMP], (500, 250), "ramp"),  # inside the second zone
        ([DOOR, RAMP], (350, 200), None),  # inside neither
        ([], (200, 200), None),  # no zones: objects count everywhere, but in no named zone
        ([DOOR, {**DOOR, "name": "hall"}], (200, 200), "door"),  # overlapping: first listed
    ],
)
def test_zone_of_names_the_zone_holding_the_bottom_centre(
    zones: list[dict[str, Any]], foot: tuple[float, float], expected: str | None
) -> None:
    detection_filter = DetectionFilter(FilterConfig.model_validate({"zones": zones}))

    assert detection_filter.zone_of(det(foot_box(*foot))) == expected


def test_a_mask_of_fewer_than_three_points_is_rejected_saying_what_it_got() -> None:
    config = FilterConfig(masks=[[(0, 0), (10, 10)]])

    with pytest.raises(ValueError, match=r"mask 0 must have at least 3 points.*got 2"):
        DetectionFilter(config)


def test_point_in_polygon_agrees_with_opencv_on_a_concave_polygon() -> None:
    # given a concave polygon (an L) and many random points, none on an edge
    polygon = np.array([[0, 0], [100, 0], [100, 40], [40, 40], [40, 100], [0, 100]], float)
    points = np.random.default_rng(7).uniform(-20, 120, size=(2000, 2))
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    reference = np.array(
        [cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points]
    )
    off_edges = np.abs(reference) > 1e-3

    # when the vectorised test runs, then it matches OpenCV point for point
    inside = points_in_polygon(points, polygon)
    np.testing.assert_array_equal(inside[off_edges], reference[off_edges] > 0)
