"""A camera with a motion gate on a still scene: the detector rests, the object is sent once.

The scene is drawn: a still textured background with sensor noise, a cyan object that
enters, stands still for 20 s, and leaves. The detector is an in-memory one that finds the
cyan pixels, so what is under test is when it is called and what reaches the sink.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from lensflow.edge import camera as camera_module
from lensflow.edge.best_crop import on_edge
from lensflow.edge.camera import CameraWorker, ReadyCrop
from lensflow.edge.metrics import EdgeMetrics
from lensflow.edge.sources import Frame, SourceStats
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CameraConfig, CropConfig
from lensflow.shared.detectors.base import Detection, DetectionBatch, DetectorBackend, ModelInfo

FPS = 10.0
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
WIDTH, HEIGHT = 320, 240
OBJECT = (40, 80)  # width, height
CYAN = (255, 255, 0)  # BGR; brighter than most of the grey background
# (first frame, last frame, x at the first frame, x step per frame); y is fixed
ENTER, STAND, LEAVE, EMPTY_AFTER = (20, 49), (50, 249), (250, 279), 320


def background() -> Image:
    """A still scene of grey blocks (no cyan in it)."""
    rng = np.random.default_rng(7)
    image = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
    for _ in range(25):
        x, y = int(rng.integers(0, WIDTH - 20)), int(rng.integers(0, HEIGHT - 20))
        grey = int(rng.integers(40, 200))
        cv2.rectangle(image, (x, y), (x + 40, y + 30), (grey, grey, grey), -1)
    return image


def object_x(index: int) -> int | None:
    """Where the object's left edge is in frame ``index``; None when it is not in view."""
    if ENTER[0] <= index <= ENTER[1]:
        return -OBJECT[0] + 5 * (index - ENTER[0] + 1)
    if STAND[0] <= index <= STAND[1]:
        return object_x(ENTER[1])
    if LEAVE[0] <= index <= LEAVE[1]:
        start = object_x(ENTER[1])
        assert start is not None
        return start + 8 * (index - LEAVE[0] + 1)
    return None


def scene() -> list[Image]:
    """Every frame of the scene, with sensor noise."""
    rng = np.random.default_rng(11)
    still = background()
    frames = []
    for index in range(EMPTY_AFTER):
        noise = rng.normal(0, 4, still.shape)
        frame = np.clip(still.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        x = object_x(index)
        if x is not None:
            cv2.rectangle(frame, (x, 100), (x + OBJECT[0] - 1, 100 + OBJECT[1] - 1), CYAN, -1)
        frames.append(frame)
    return frames


class SceneSource:
    """A frame source of prepared frames captured ``1 / FPS`` apart."""

    def __init__(self, frames: Sequence[Image]) -> None:
        self.camera, self.target, self.stats = "door", "scene", SourceStats()
        self._frames = frames

    @property
    def dead(self) -> bool:
        return False

    def __iter__(self) -> Iterator[Frame]:
        for index, image in enumerate(self._frames):
            captured_at = T0 + timedelta(seconds=index / FPS)
            yield Frame(self.camera, index, captured_at, image, f"{index}.png")

    def close(self) -> None:
        pass


class CyanDetector(DetectorBackend):
    """Finds the cyan object (one person) in a frame; counts its calls."""

    info = ModelInfo(path="in-memory", names={0: "person"}, input_size=(640, 640))

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        self.calls += len(images)
        found: list[list[Detection]] = []
        for image in images:
            cyan = cv2.inRange(image, (235, 235, 0), (255, 255, 20))
            x, y, w, h = cv2.boundingRect(cyan)
            box = (float(x), float(y), float(x + w), float(y + h))
            found.append([Detection(0, "person", 0.9, box)] if w * h >= 200 else [])
        return DetectionBatch(found)


def run_scene(
    monkeypatch: pytest.MonkeyPatch, motion: dict[str, object]
) -> tuple[CameraWorker, CyanDetector, list[ReadyCrop]]:
    """Run a camera over the scene to its end; its worker, detector and crops sent."""
    frames = scene()
    monkeypatch.setattr(camera_module, "open_source", lambda *a, **k: SceneSource(frames))
    detector, crops = CyanDetector(), []
    config = CameraConfig.model_validate(
        {"name": "door", "source": {"type": "usb"}, "fps": FPS, "motion": motion}
    )
    worker = CameraWorker(
        config,
        crops=CropConfig(resend_after_s=120),
        detector=lambda: detector,
        sink=crops.append,
        metrics=EdgeMetrics(),
        realtime=False,
    )
    worker.start()
    assert worker.finished.wait(60)
    worker.stop()
    return worker, detector, crops


def test_a_still_scene_rests_the_detector_and_sends_the_object_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a camera with the motion gate on, and a scene where an object enters, stands
    # still for 20 s and leaves
    # when the camera runs over it
    worker, detector, crops = run_scene(monkeypatch, {"enabled": True})

    # then the detector ran on a small part of the frames: while the object moved (and
    # until its track settled), for the periodic check while it stood, and until its
    # track was retired after it left
    frames = EMPTY_AFTER
    assert worker.frames == frames
    assert detector.calls == worker.frames_detected
    assert detector.calls < 0.4 * frames
    metrics = worker._metrics
    skipped = metrics.frames_motion_skipped.labels("door")._value.get()
    assert skipped == frames - detector.calls
    assert metrics.frames_detected.labels("door", "periodic")._value.get() >= 3

    # and the object went once, as one track, not again while it stood still: the same
    # crop as with the detector on every frame
    assert len(crops) == 1
    [crop] = crops
    assert crop.track_id is not None and crop.reason == "track_end"
    _, _, ungated = run_scene(monkeypatch, {})
    assert [(c.detection, c.captured_at, c.jpeg) for c in ungated] == [
        (crop.detection, crop.captured_at, crop.jpeg)
    ]


def test_without_the_gate_every_frame_is_detected_and_the_object_still_goes_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the same scene and a camera with the motion gate off (the default)
    # when the camera runs over it
    worker, detector, crops = run_scene(monkeypatch, {})

    # then every frame went to the detector, counted as "always", and the object once
    assert detector.calls == worker.frames == EMPTY_AFTER
    always = worker._metrics.frames_detected.labels("door", "always")._value.get()
    assert always == EMPTY_AFTER
    assert worker._metrics.frames_motion_skipped.labels("door")._value.get() == 0
    assert len(crops) == 1


def test_followed_objects_are_detected_every_n_frames_and_still_sent_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the same scene and a camera whose gate detects followed objects at most every
    # 3rd frame (motion within their tracked boxes, tracks that move)
    # when the camera runs over it, and again with the gate on and no interval
    worker, detector, crops = run_scene(monkeypatch, {"enabled": True, "track_interval_frames": 3})
    _, every, _ = run_scene(monkeypatch, {"enabled": True})

    # then the detector ran on fewer frames than with the gate alone (about 55 against 90:
    # motion reaching beyond the track's box, as while the object enters, still runs it)
    assert detector.calls == worker.frames_detected
    assert detector.calls < every.calls
    assert worker.frames == EMPTY_AFTER

    # and the object still went once, as one track, whole (not cut off by the frame's edge
    # as it enters), as when detecting every frame
    assert len(crops) == 1
    [crop] = crops
    assert crop.track_id is not None and crop.reason == "track_end"
    _, _, ungated = run_scene(monkeypatch, {})
    assert len(ungated) == 1
    for sent in (crop, ungated[0]):
        x1, y1, x2, y2 = sent.detection.box
        assert (x2 - x1, y2 - y1) == OBJECT
        assert not on_edge(sent.detection.box, (WIDTH, HEIGHT))
