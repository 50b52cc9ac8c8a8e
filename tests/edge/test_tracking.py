"""ObjectTracker (ByteTrack from ``trackers``) and BestCropSelector: stable ids, which crops go."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from lensflow.edge.best_crop import BestCropSelector, CropCandidate, default_quality, on_edge
from lensflow.edge.tracking import ObjectTracker, TrackedDetection
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CropConfig
from lensflow.shared.detectors.base import Detection

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
FPS = 10.0
FRAME = np.zeros((480, 960, 3), np.uint8)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def person(box: tuple[float, float, float, float], score: float = 0.9) -> Detection:
    return Detection(class_id=0, class_name="person", score=score, box=box)


def crossing_scene(frames: int = 30) -> list[list[tuple[str, Detection]]]:
    """Per frame, (true object, detection): "a" walks right, "b" walks left across "a"'s
    path (their boxes all but coincide at frame 15), "c" stands still and leaves after frame
    9. Each object's score peaks in one frame: a at 12, b at 20, c at 5."""
    scene = []
    for f in range(frames):
        objects = [
            ("a", person((40 + 20 * f, 100, 100 + 20 * f, 220), 0.9 - 0.02 * abs(f - 12))),
            ("b", person((640 - 20 * f, 120, 700 - 20 * f, 240), 0.9 - 0.02 * abs(f - 20))),
        ]
        if f <= 9:
            objects.append(("c", person((800, 300, 880, 460), 0.9 - 0.02 * abs(f - 5))))
        scene.append(objects)
    return scene


def track_ids_by_object(
    tracker: ObjectTracker, scene: list[list[tuple[str, Detection]]]
) -> dict[str, list[int]]:
    """Run the tracker over a scene; the track id given to each object, frame by frame."""
    ids: dict[str, list[int]] = defaultdict(list)
    for objects in scene:
        truth = {id(detection): name for name, detection in objects}
        for tracked in tracker.update([detection for _, detection in objects]):
            ids[truth[id(tracked.detection)]].append(tracked.track_id)
    return ids


def test_tracker_keeps_one_id_per_object_through_a_crossing() -> None:
    # given two objects crossing paths and one leaving early
    scene = crossing_scene()

    # when ByteTrack follows them
    ids = track_ids_by_object(ObjectTracker(frame_rate=FPS), scene)

    # then each object keeps one id, from its second frame on (ids are confirmed on the 2nd)
    assert {name: set(track) for name, track in ids.items()} == {"a": {0}, "b": {1}, "c": {2}}
    assert {name: len(track) for name, track in ids.items()} == {"a": 29, "b": 29, "c": 9}


def test_tracker_returns_nothing_for_empty_frames_and_rejects_a_bad_frame_rate() -> None:
    assert ObjectTracker(frame_rate=FPS).update([]) == []
    with pytest.raises(ValueError, match="frame_rate must be a positive number of FPS, but got 0"):
        ObjectTracker(frame_rate=0)


def run_scene(
    selector: BestCropSelector, scene: list[list[tuple[str, Detection]]], *, tail_frames: int
) -> list[tuple[int, CropCandidate]]:
    """Track a scene at FPS, then feed empty frames; (frame index when sent, candidate)."""
    tracker = ObjectTracker(frame_rate=FPS)
    emitted = []
    frames = [[d for _, d in objects] for objects in scene] + [[]] * tail_frames
    for index, detections in enumerate(frames):
        tracked = tracker.update(detections)
        emitted += [(index, c) for c in selector.update(index, at(index / FPS), FRAME, tracked)]
    return emitted


def test_best_per_track_sends_one_crop_per_track_when_it_ends_choosing_its_best_frame() -> None:
    # given best-per-track crops, tracks ending after 0.5 s unseen, no periodic resend in 4 s
    selector = BestCropSelector(CropConfig(track_lost_after_s=0.5, resend_after_s=60))

    # when the crossing scene is tracked, then 1 s of empty frames follows
    emitted = run_scene(selector, crossing_scene(), tail_frames=10)

    # then exactly one crop per track, each the frame of that object's highest score, sent
    # when the track has been unseen for 0.5 s: c (last seen in frame 9) while a and b go on
    got = [(sent_at, c.track_id, c.reason, c.frame_index, c.captured_at) for sent_at, c in emitted]
    assert got == [
        (14, 2, "track_end", 5, at(0.5)),
        (34, 0, "track_end", 12, at(1.2)),
        (34, 1, "track_end", 20, at(2.0)),
    ]
    assert [c.quality for _, c in emitted] == [pytest.approx(0.9 * (80 * 160) ** 0.5)] + [
        pytest.approx(0.9 * (60 * 120) ** 0.5)
    ] * 2
    # and nothing is held once the tracks have ended
    assert selector.live_tracks == 0
    assert selector.flush() == []


def tracked(track_id: int, score: float, x: float = 100) -> TrackedDetection:
    return TrackedDetection(person((x, 100, x + 50, 200), score), track_id)


def by_score(image: Image, box: tuple[float, float, float, float], score: float) -> float:
    """A quality that is just the score, so the expected choice reads off the table."""
    return score


def test_a_long_track_is_resent_periodically_with_the_best_since_the_last_send() -> None:
    # given a resend every 10 s and one track seen once a second for 25 s (t = 0 .. 24),
    # scoring 0.5 except at t = 3 (0.9), 15 (0.8) and 22 (0.7)
    selector = BestCropSelector(
        CropConfig(resend_after_s=10, track_lost_after_s=2), quality=by_score
    )
    peaks = {3: 0.9, 15: 0.8, 22: 0.7}
    emitted = []
    for t in range(25):
        detections = [tracked(7, peaks.get(t, 0.5))]
        emitted += selector.update(t, at(t), FRAME, detections)
    # when it then goes unseen for 2 s
    emitted += selector.update(25, at(25), FRAME, [])
    emitted += selector.update(26, at(26), FRAME, [])

    # then a crop at t = 10 (best of 0..10), t = 20 (best of 11..20), and at the end
    got = [(c.reason, c.frame_index, c.quality) for c in emitted]
    assert got == [("periodic", 3, 0.9), ("periodic", 15, 0.8), ("track_end", 22, 0.7)]


def test_every_detection_mode_sends_each_tracked_detection_at_once() -> None:
    # given every-detection crops
    selector = BestCropSelector(CropConfig(mode="every_detection"))

    # when three frames bring two tracked detections each
    per_frame = [
        selector.update(f, at(f), FRAME, [tracked(1, 0.8), tracked(2, 0.6, x=300)])
        for f in range(3)
    ]

    # then each frame's two are sent with that frame, and nothing is left to flush
    assert [[(c.track_id, c.frame_index, c.reason) for c in out] for out in per_frame] == [
        [(1, f, "every_detection"), (2, f, "every_detection")] for f in range(3)
    ]
    assert selector.live_tracks == 0
    assert selector.flush() == []


def test_flush_sends_the_best_pending_candidate_of_every_live_track_once() -> None:
    # given two live tracks, seen for five frames, not yet ended
    selector = BestCropSelector(CropConfig(), quality=by_score)
    scores = {4: [0.3, 0.6, 0.9, 0.6, 0.3], 9: [0.7, 0.5, 0.4, 0.2, 0.1]}
    for f in range(5):
        sent = selector.update(f, at(f / FPS), FRAME, [tracked(t, s[f]) for t, s in scores.items()])
        assert sent == []

    # when the stream ends
    flushed = selector.flush()

    # then each track's best goes, once
    assert [(c.track_id, c.frame_index, c.reason) for c in flushed] == [
        (4, 2, "flush"),
        (9, 0, "flush"),
    ]
    assert selector.live_tracks == 0
    assert selector.flush() == []


def test_a_clock_that_goes_back_does_not_hold_tracks_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a track last seen at 12:00:10
    selector = BestCropSelector(CropConfig(track_lost_after_s=2))
    selector.update(0, at(10), FRAME, [tracked(1, 0.9)])

    # when the clock is reset to 12:00:00, then the track ends 2 s later on the new clock
    with caplog.at_level(logging.WARNING, logger="lensflow.edge.best_crop"):
        assert selector.update(1, at(0), FRAME, []) == []
    assert "captured_at went back" in caplog.text
    assert [c.reason for c in selector.update(2, at(2), FRAME, [])] == ["track_end"]


# Approximate boxes of the bus and the four people in ultralytics' bus.jpg (810 x 1080).
BUS_OBJECTS = [
    (5, "bus", (22, 231, 805, 756)),
    (0, "person", (48, 398, 245, 902)),
    (0, "person", (221, 405, 344, 857)),
    (0, "person", (669, 392, 809, 877)),
    (0, "person", (0, 550, 63, 873)),
]


def sharp_quality(image: Image, box: tuple[float, float, float, float], score: float) -> float:
    """Score x sqrt(area) x Laplacian variance of the box: a quality that reads pixels."""
    x1, y1, x2, y2 = (max(0, int(v)) for v in box)
    region = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return default_quality(image, box, score) * float(cv2.Laplacian(region, cv2.CV_64F).var())


def test_real_frames_with_jittery_detections_keep_one_id_and_one_crop_per_object(
    sample_images: dict[str, Image],
) -> None:
    # given 20 frames of bus.jpg panning 2 px a frame, detections jittering by ~2 px and 0.05
    # in score, and the second person missed by the detector in frames 8 and 9
    image = sample_images["bus"]
    rng = np.random.default_rng(3)
    tracker = ObjectTracker(frame_rate=FPS)
    selector = BestCropSelector(CropConfig(), quality=sharp_quality)
    ids: dict[int, set[int]] = defaultdict(set)
    for f in range(20):
        shift = np.float32([[1, 0, -2 * f], [0, 1, 0]])
        frame = cv2.warpAffine(image, shift, (image.shape[1], image.shape[0]))
        detections, truth = [], {}
        for n, (class_id, name, (x1, y1, x2, y2)) in enumerate(BUS_OBJECTS):
            if n == 2 and f in (8, 9):
                continue
            jx1, jy1, jx2, jy2 = rng.normal(0, 2, 4)
            box = (max(0.0, x1 - 2 * f + jx1), y1 + jy1, x2 - 2 * f + jx2, y2 + jy2)
            score = float(np.clip(0.85 + rng.normal(0, 0.05), 0.3, 1.0))
            detections.append(Detection(class_id, name, score, box))
            truth[id(detections[-1])] = n
        tracks = tracker.update(detections)
        for t in tracks:
            ids[truth[id(t.detection)]].add(t.track_id)
        assert selector.update(f, at(f / FPS), frame, tracks) == []  # no track ended yet

    # then no id fragments (one per object, all different), and the flush sends one crop
    # per object cut from a real frame, with a positive sharpness-based quality
    assert sorted(ids) == list(range(len(BUS_OBJECTS)))
    assert all(len(track_ids) == 1 for track_ids in ids.values())
    assert len(set.union(*ids.values())) == len(BUS_OBJECTS)
    crops = selector.flush()
    assert sorted(c.track_id for c in crops) == sorted(set.union(*ids.values()))
    assert all(c.image.shape == image.shape and c.quality > 0 for c in crops)


def still_person() -> Detection:
    return person((300, 100, 360, 260))


def test_a_still_object_keeps_its_id_across_coasted_frames_and_not_across_a_gap() -> None:
    # given two trackers that confirmed the same still object on frames 0-2
    coasting, gapped = ObjectTracker(FPS), ObjectTracker(FPS)
    for tracker in (coasting, gapped):
        for f in range(3):
            tracker.update([still_person()], captured_at=at(f / FPS))

    # when one coasts through 10 s without detection (a motion gate said no) and the other
    # simply gets no frames, and both then see the object again
    held = [coasting.coast(captured_at=at(f / FPS)) for f in range(3, 103)]
    again = coasting.update([still_person()], captured_at=at(10.3))
    after_gap = gapped.update([still_person()], captured_at=at(10.3))

    # then the coasted track was held on every frame and keeps its id; the gap retired it
    assert held == [[0]] * 100
    assert [t.track_id for t in again] == [0]
    assert after_gap == []  # a new, not yet confirmed track


def test_tracks_need_detection_until_they_stand_still_for_stationary_after_s() -> None:
    # given a tracker that counts a track stationary after 1 s
    tracker = ObjectTracker(FPS, stationary_after_s=1.0)
    assert not tracker.needs_detection  # no tracks

    # when an object walks for 1 s, then stands
    needs, still = [], []
    for f in range(30):
        x = 100 + 15 * min(f, 10)
        tracker.update([person((x, 100, x + 60, 260))], captured_at=at(f / FPS))
        needs.append(tracker.needs_detection)
        still.append(tracker.stationary_boxes)

    # then it needs detection while unconfirmed, walking and for 1 s standing, then not;
    # its stationary box is where it stopped
    assert needs == [True] * 20 + [False] * 10
    assert still[-1] == [(250, 100, 310, 260)]


def test_a_track_missed_by_the_detector_needs_detection_until_retired() -> None:
    tracker = ObjectTracker(FPS, lost_track_s=0.5, stationary_after_s=0.1)
    for f in range(5):
        tracker.update([still_person()], captured_at=at(f / FPS))
    assert not tracker.needs_detection

    tracker.update([], captured_at=at(0.5))  # the periodic check finds it gone

    assert tracker.needs_detection and tracker.coast(captured_at=at(0.6)) == []
    for f in range(7, 14):
        tracker.update([], captured_at=at(f / FPS))
    assert not tracker.needs_detection  # retired


def test_held_tracks_do_not_end_and_send_nothing_until_they_are_no_longer_held() -> None:
    # given a selector that ends tracks after 2 s unseen, and a track seen once
    selector = BestCropSelector(CropConfig(track_lost_after_s=2, resend_after_s=60))
    assert selector.update(0, at(0), FRAME, [tracked(7, 0.9)]) == []

    # when the tracker holds the track for 10 s of frames without detection, then stops
    held = [selector.hold(at(0.1 * f), [7]) for f in range(1, 101)]
    ended = selector.hold(at(12.1), [])

    # then nothing is sent while it is held, and its one best crop goes when it ends
    assert held == [[]] * 100
    assert [(c.track_id, c.reason, c.frame_index) for c in ended] == [(7, "track_end", 0)]


def test_a_crop_cut_off_by_the_frame_edge_loses_to_a_whole_one() -> None:
    # given a track first seen entering (its box on the frame's left edge), with a confident,
    # large box, then whole inside the frame with a smaller box (0.6 of its quality), then
    # leaving on the right edge with a large box again
    selector = BestCropSelector(CropConfig(track_lost_after_s=1), quality=default_quality)
    edge = TrackedDetection(Detection(0, "person", 0.99, (0.0, 100.0, 300.0, 400.0)), 1)
    whole = TrackedDetection(Detection(0, "person", 0.9, (50.0, 100.0, 210.0, 350.0)), 1)
    later_edge = TrackedDetection(Detection(0, "person", 0.99, (700.0, 100.0, 959.0, 400.0)), 1)

    # when the track ends
    selector.update(0, at(0), FRAME, [edge])
    selector.update(1, at(0.1), FRAME, [whole])
    selector.update(2, at(0.2), FRAME, [later_edge])
    [sent] = selector.update(3, at(5), FRAME, [])

    # then the whole one went, although its quality alone is lower
    assert sent.detection == whole.detection and not sent.cut_off
    assert on_edge(edge.detection.box, (960, 480)) and on_edge(later_edge.detection.box, (960, 480))
    assert not on_edge(whole.detection.box, (960, 480))


def test_a_far_worse_whole_crop_does_not_replace_a_cut_off_one() -> None:
    # given a person always cut by the bottom edge, and once a small low-score box of them
    # (a head) away from it
    selector = BestCropSelector(CropConfig(track_lost_after_s=1), quality=default_quality)
    cut = TrackedDetection(Detection(0, "person", 0.95, (300.0, 40.0, 600.0, 480.0)), 1)
    head = TrackedDetection(Detection(0, "person", 0.30, (400.0, 40.0, 430.0, 80.0)), 1)

    # when the track ends
    selector.update(0, at(0), FRAME, [cut])
    selector.update(1, at(0.1), FRAME, [head])
    [sent] = selector.update(2, at(5), FRAME, [])

    # then the cut-off person went, not the head
    assert sent.detection == cut.detection and sent.cut_off


@pytest.mark.parametrize(
    ("box", "cut"),
    [
        ((1.5, 10.0, 50.0, 50.0), True),  # 1.5 px from the left
        ((500.0, 10.0, 958.5, 50.0), True),  # 1.5 px from the right: the same
        ((6.0, 10.0, 50.0, 50.0), False),  # beyond 0.5 % of 960 px (4.8)
        ((500.0, 10.0, 954.0, 470.0), False),
        ((500.0, 10.0, 956.0, 50.0), True),
    ],
)
def test_the_edge_margin_is_the_same_on_every_side(box: tuple[float, ...], cut: bool) -> None:
    assert on_edge(box, (960, 480)) is cut  # type: ignore[arg-type]
