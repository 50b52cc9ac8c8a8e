"""MotionDetector and MotionGate on drawn frames: noise is not motion, a moving object is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from lensflow.edge.motion import MotionDetector
from lensflow.edge.motion_gate import GateDecision, MotionGate
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CameraConfig, MotionConfig

WIDTH, HEIGHT = 640, 480
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
RNG_SEED = 3


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def still_scene() -> Image:
    """Grey blocks on grey: a background with texture and contrast."""
    rng = np.random.default_rng(RNG_SEED)
    image = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, WIDTH - 60)), int(rng.integers(0, HEIGHT - 60))
        grey = int(rng.integers(30, 220))
        cv2.rectangle(image, (x, y), (x + 60, y + 45), (grey, grey, grey), -1)
    return image


def frames(count: int, *, object_at: list[tuple[int, int]] | None = None) -> list[Image]:
    """``count`` noisy frames of the still scene, with a white 60x120 object at
    ``object_at[i]`` (its top-left corner) in frame ``i`` when given."""
    rng = np.random.default_rng(RNG_SEED + 1)
    still = still_scene().astype(np.float32)
    out = []
    for index in range(count):
        frame = np.clip(still + rng.normal(0, 6, still.shape), 0, 255).astype(np.uint8)
        if object_at is not None:
            x, y = object_at[index]
            cv2.rectangle(frame, (x, y), (x + 59, y + 119), (250, 250, 250), -1)
        out.append(frame)
    return out


def motion_config(**fields: object) -> MotionConfig:
    return MotionConfig.model_validate({"enabled": True, **fields})


@pytest.mark.parametrize(
    "improve_contrast",
    [
        True,  # the stretch must not lift sensor noise over the threshold
        False,
    ],
)
def test_noise_on_a_still_scene_is_not_motion(improve_contrast: bool) -> None:
    # given a still scene with sensor noise
    detector = MotionDetector(motion_config(improve_contrast=improve_contrast))

    # when 60 frames go through the detector
    results = [detector.detect(frame) for frame in frames(60)]

    # then none has motion; the first frame started the background
    assert results[0].fresh and not any(r.fresh for r in results[1:])
    assert [r.boxes for r in results] == [()] * 60


def test_a_moving_object_is_a_motion_box_around_it() -> None:
    # given 10 still frames, then an object walking right 12 px a frame
    path = [(-100, 0)] * 10 + [(100 + 12 * i, 200) for i in range(10)]
    detector = MotionDetector(motion_config())

    # when the frames go through the detector
    results = [detector.detect(frame) for frame in frames(20, object_at=path)]

    # then the still frames have none, and each frame with the object has a box that
    # covers where the object is (frame pixels, a few pixels of slack from the low res)
    assert all(r.boxes == () for r in results[:10])
    for (x, y), result in zip(path[10:], results[10:], strict=True):
        assert len(result.boxes) >= 1
        x1, y1, x2, y2 = max(result.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        assert x1 <= x + 6 and y1 <= y + 6 and x2 >= x + 54 and y2 >= y + 114
        assert not result.calibrating


def test_motion_inside_a_mask_is_ignored_and_outside_it_is_not() -> None:
    # given a mask over the top-left quarter (a timestamp, a tree)
    mask = [[0, 0], [320, 0], [320, 240], [0, 240]]
    detector = MotionDetector(motion_config(masks=[mask]))
    inside = [(-100, 0)] * 5 + [(40 + 10 * i, 40) for i in range(10)]  # stays in the mask
    outside = [(-100, 0)] * 5 + [(400 + 10 * i, 300) for i in range(10)]

    # when an object moves inside the mask, then another (a fresh run) outside it
    masked = [detector.detect(frame).boxes for frame in frames(15, object_at=inside)]
    detector = MotionDetector(motion_config(masks=[mask]))
    unmasked = [detector.detect(frame).boxes for frame in frames(15, object_at=outside)]

    # then only the one outside is motion
    assert masked == [()] * 15
    assert all(boxes for boxes in unmasked[5:])


def test_a_change_of_most_of_the_frame_recalibrates_instead_of_being_motion() -> None:
    # given a gate on a still scene
    gate = MotionGate(motion_config())
    still = frames(5)
    for index, frame in enumerate(still):
        gate.decide(frame, captured_at=at(index * 0.1), tracks_active=False)

    # when the lights change the whole frame at once
    lit = cv2.convertScaleAbs(still[-1], alpha=0.3, beta=0)
    decision = gate.decide(lit, captured_at=at(0.5), tracks_active=False)

    # then it is not motion (the background recalibrates); the detector rests
    assert decision == GateDecision(detect=False, reason=None, motion=decision.motion)


def run_gate(
    gate: MotionGate, images: list[Image], *, tracks_active: bool = False, fps: float = 10.0
) -> list[GateDecision]:
    return [
        gate.decide(image, captured_at=at(index / fps), tracks_active=tracks_active)
        for index, image in enumerate(images)
    ]


def test_the_gate_off_runs_the_detector_on_every_frame_without_looking() -> None:
    gate = MotionGate(MotionConfig())  # enabled: false, the default

    decisions = run_gate(gate, frames(3))

    assert [d.reason for d in decisions] == ["always"] * 3
    assert all(d.detect and d.motion == () for d in decisions)


def test_the_gate_runs_at_startup_then_periodically_on_a_still_scene() -> None:
    # given a gate with a full-frame check every 2 s, on 6 s of a still scene at 10 fps
    gate = MotionGate(motion_config(check_every_s=2.0))

    # when it decides on each frame
    decisions = run_gate(gate, frames(60))

    # then the detector runs on the first frame and every 2 s after it, and rests otherwise
    runs = {index: d.reason for index, d in enumerate(decisions) if d.detect}
    assert runs == {0: "startup", 20: "periodic", 40: "periodic"}


def test_the_gate_runs_while_tracks_are_active_even_without_motion() -> None:
    gate = MotionGate(motion_config())

    decisions = run_gate(gate, frames(5), tracks_active=True)

    assert [d.reason for d in decisions] == ["startup"] + ["tracks"] * 4


def test_motion_within_a_stationary_object_does_not_run_the_detector() -> None:
    # given a gate that saw the still scene, and an object that appears and stays put
    gate = MotionGate(motion_config())
    path = [(-100, 0)] * 3 + [(300, 200)] * 3
    images = frames(6, object_at=path)
    run_gate(gate, images[:4])

    # when the tracker says the object is stationary (its box), or says nothing
    still = (300.0, 200.0, 360.0, 320.0)
    held = gate.decide(images[4], captured_at=at(0.4), tracks_active=False, still_boxes=[still])
    other = (100.0, 100.0, 160.0, 220.0)  # a stationary object elsewhere
    seen = gate.decide(images[5], captured_at=at(0.5), tracks_active=False, still_boxes=[other])

    # then its motion keeps the detector resting only within the stationary object
    assert held.motion and not held.detect
    assert seen.motion and seen.reason == "motion"


def test_motion_the_detector_found_nothing_in_becomes_background_at_once() -> None:
    # given a gate on a still scene where something appears (a shadow) and stays
    gate = MotionGate(motion_config())
    path = [(-100, 0)] * 3 + [(300, 200)] * 3
    images = frames(6, object_at=path)
    decisions = run_gate(gate, images[:4])
    assert decisions[3].reason == "motion"

    # when the detector ran on it and found nothing
    gate.absorb_empty(decisions[3], found=[])

    # then the next frames are not motion
    rest = [gate.decide(i, captured_at=at(0.5), tracks_active=False) for i in images[4:]]
    assert [d.motion for d in rest] == [(), ()]


def test_motion_the_detector_found_an_object_in_stays_motion() -> None:
    gate = MotionGate(motion_config())
    path = [(-100, 0)] * 3 + [(300, 200)] * 3
    images = frames(6, object_at=path)
    decisions = run_gate(gate, images[:4])

    gate.absorb_empty(decisions[3], found=[(300.0, 200.0, 360.0, 320.0)])

    assert gate.decide(images[4], captured_at=at(0.5), tracks_active=False).reason == "motion"


@pytest.mark.parametrize(
    ("motion", "message"),
    [
        # a mask point left of the frame
        ({"masks": [[[0, 0], [-5, 10], [10, 10]]]}, "but got [[-5.0, 10.0]]"),
        # a mask of two points is no polygon
        ({"masks": [[[0, 0], [10, 10]]]}, "at least 3 items"),
        # the threshold is a grey level difference, 1 to 255
        ({"threshold": 0}, "greater than or equal to 1"),
        # an unknown key
        ({"sensitivity": 3}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_motion_section_names_what_was_expected(
    motion: dict[str, object], message: str
) -> None:
    camera = {"name": "door", "source": {"type": "usb"}, "motion": motion}

    with pytest.raises(ValidationError) as error:
        CameraConfig.model_validate(camera)

    assert message in str(error.value)
    assert "motion." in str(error.value)


def test_a_tracked_moving_object_is_detected_every_n_frames_and_a_new_one_at_once() -> None:
    # given a gate that detects followed objects at most every 3 frames, a still scene, and
    # an object that walks right 6 px a frame, tracked (its box given as followed); no
    # contrast stretch, which a big white object shifts enough to make the blocks motion
    gate = MotionGate(motion_config(track_interval_frames=3, improve_contrast=False))
    walk = [(-100, 0)] * 3 + [(200 + 6 * i, 200) for i in range(12)]
    images = frames(15, object_at=walk)
    run_gate(gate, images[:4])  # startup, then the object appears: motion, detected

    # when the tracker follows it (its last box) and says its track moves
    decisions = []
    for index in range(4, 15):
        x, y = walk[index - 1]
        followed = (float(x), float(y), x + 60.0, y + 120.0)
        decisions.append(
            gate.decide(
                images[index],
                captured_at=at(index / 10),
                tracks_active=True,
                tracked_boxes=[followed],
            )
        )

    # then the detector runs every 3rd frame; the frames between rest, marked rate-limited
    assert [d.detect for d in decisions] == [False, False, True] * 3 + [False, False]
    assert all(d.motion for d in decisions)
    assert all(d.limited for d in decisions if not d.detect)
    assert {d.reason for d in decisions if d.detect} <= {"motion", "tracks"}

    # and when a new object enters elsewhere on a rate-limited frame, the detector runs at once
    gate = MotionGate(motion_config(track_interval_frames=3, improve_contrast=False))
    other = [(-100, 0)] * 3 + [(200, 200)] * 2 + [(500, 40)] * 2
    entering = frames(7, object_at=other)
    run_gate(gate, entering[:5])
    still = (200.0, 200.0, 260.0, 320.0)  # followed, not (yet) stationary
    rest = gate.decide(entering[5], captured_at=at(0.5), tracks_active=True, tracked_boxes=[still])
    assert rest.reason == "motion"  # motion where the first one left is not within its box


def test_a_new_object_outside_tracked_boxes_runs_the_detector_at_once() -> None:
    # given a gate with a long interval that just ran on a frame, with one object followed
    gate = MotionGate(motion_config(track_interval_frames=10, improve_contrast=False))
    path = [(-100, 0)] * 3 + [(100, 100)] * 2 + [(100, 100)]
    images = frames(6, object_at=path)
    run_gate(gate, images[:4])  # the first object appears at frame 3: detected
    followed = (100.0, 100.0, 160.0, 220.0)
    held = gate.decide(images[4], captured_at=at(0.4), tracks_active=True, tracked_boxes=[followed])
    assert not held.detect and held.limited

    # when a second object enters far from it
    entering = images[5].copy()
    cv2.rectangle(entering, (450, 300), (509, 419), (250, 250, 250), -1)
    decision = gate.decide(
        entering, captured_at=at(0.5), tracks_active=True, tracked_boxes=[followed]
    )

    # then the detector runs at once, for motion
    assert decision.detect and decision.reason == "motion"


def test_track_interval_frames_is_at_least_one() -> None:
    assert MotionConfig().track_interval_frames == 1
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        MotionConfig.model_validate({"track_interval_frames": 0})


def test_motion_where_the_detector_last_looked_is_rate_limited_and_elsewhere_is_not() -> None:
    # given a gate with an interval of 3 and an object that walks 6 px a frame, which the
    # detector does not find (nothing tracked: a thing of no interest, or a miss)
    gate = MotionGate(motion_config(track_interval_frames=3, improve_contrast=False))
    walk = [(-100, 0)] * 3 + [(200 + 6 * i, 200) for i in range(7)]
    images = frames(10, object_at=walk)
    first = run_gate(gate, images[:4])
    assert first[3].detect and first[3].reason == "motion"  # it appears: detected at once

    # when it keeps walking within where the detector last saw motion
    decisions = [
        gate.decide(images[i], captured_at=at(i / 10), tracks_active=False) for i in (4, 5, 6)
    ]

    # then the detector looks again every 3rd frame, the frames between rate-limited
    assert [d.detect for d in decisions] == [False, False, True]
    assert all(d.limited for d in decisions[:2])

    # and a second object appearing far from it on a rate-limited frame runs it at once
    assert not gate.decide(images[7], captured_at=at(0.7), tracks_active=False).detect
    entering = images[8].copy()
    cv2.rectangle(entering, (480, 20), (539, 139), (250, 250, 250), -1)
    decision = gate.decide(entering, captured_at=at(0.8), tracks_active=False)
    assert decision.detect and decision.reason == "motion"


def test_a_track_waiting_for_confirmation_is_never_rate_limited() -> None:
    # given the same walk and a gate with an interval of 3
    gate = MotionGate(motion_config(track_interval_frames=3, improve_contrast=False))
    walk = [(-100, 0)] * 3 + [(200 + 6 * i, 200) for i in range(5)]
    images = frames(8, object_at=walk)
    run_gate(gate, images[:4])

    # when the tracker holds a track that is not confirmed yet (it needs the next frame)
    decisions = [
        gate.decide(images[i], captured_at=at(i / 10), tracks_active=True, tracks_pending=True)
        for i in (4, 5, 6, 7)
    ]

    # then every frame is detected
    assert all(d.detect for d in decisions)


@pytest.mark.parametrize("shape", [(480, 640), (480, 640, 1)])
def test_grey_frames_are_taken_as_they_come(shape: tuple[int, ...]) -> None:
    # given grey frames, H x W or H x W x 1, a still one then one with an object
    detector = MotionDetector(motion_config(improve_contrast=False))
    still = np.full(shape, 100, np.uint8)
    moved = still.copy()
    moved[200:320, 300:360] = 250

    # when the detector compares them
    detector.detect(still)
    result = detector.detect(moved)

    # then the object is motion, in frame pixels
    [(x1, y1, x2, y2)] = result.boxes
    assert x1 <= 300 <= 360 <= x2 + 10 and y1 <= 200 <= 320 <= y2 + 10
