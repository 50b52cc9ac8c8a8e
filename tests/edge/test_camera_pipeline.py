"""A camera keeping several frames in the detector service: order, isolation, errors and swaps.

Frames carry their index in their first pixel and the in-memory backends answer it back as
the detection's class id, so every crop can be traced to its frame. The sources are prepared
frames (the source is replaced in the camera module), one of which can hold its frames back
until released, as a stalled stream does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from lensflow.edge import camera as camera_module
from lensflow.edge.camera import CameraWorker, ReadyCrop
from lensflow.edge.detector_service import DetectorService
from lensflow.edge.metrics import EdgeMetrics
from lensflow.edge.sources import Frame, SourceStats
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CameraConfig, CropConfig
from lensflow.shared.detectors.base import (
    AsyncDetector,
    DetectDone,
    Detection,
    DetectionBatch,
    DetectorBackend,
    ModelInfo,
)
from lensflow.shared.errors import DetectorError

DEADLINE_S = 20.0  # generous: the machine may be busy; a stall shows as hitting it
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def tagged(camera: int, frame: int) -> Image:
    """A small frame carrying (camera, frame) in its first pixel."""
    image = np.full((32, 32, 3), 90, dtype=np.uint8)
    image[0, 0] = (camera, frame, 0)
    return image


def tag_of(image: Image) -> tuple[int, int]:
    """The (camera, frame) a frame carries."""
    return int(image[0, 0, 0]), int(image[0, 0, 1])


class TagSource:
    """Prepared frames captured 0.1 s apart; with ``hold_at``, stops before that frame until
    ``release`` is set (``reached`` is set when it gets there)."""

    def __init__(self, camera: int, count: int, *, hold_at: int | None = None) -> None:
        self.camera, self.target, self.stats = f"cam{camera}", "tags", SourceStats()
        self.frames = [tagged(camera, i) for i in range(count)]
        self.hold_at = hold_at
        self.reached, self.release = threading.Event(), threading.Event()

    @property
    def dead(self) -> bool:
        return False

    def __iter__(self) -> Iterator[Frame]:
        for index, image in enumerate(self.frames):
            if index == self.hold_at:
                self.reached.set()
                assert self.release.wait(DEADLINE_S)
            captured_at = T0 + timedelta(seconds=index / 10)
            yield Frame(self.camera, index, captured_at, image, f"{index}.png")

    def close(self) -> None:
        pass


class TagDetector(DetectorBackend):
    """Answers each frame's frame number as its class id (named after the backend); frames
    whose tag is gated wait for their gate, frames whose tag is failing raise."""

    info = ModelInfo(path="in-memory", names={0: "thing"}, input_size=(32, 32))

    def __init__(self, name: str = "old", *, parallel: int = 2) -> None:
        self.name, self._parallel = name, parallel
        self.gates: dict[tuple[int, int], threading.Event] = {}
        self.failing: dict[tuple[int, int], Exception] = {}
        self.active = 0
        self.active_when_closed: int | None = None
        self._lock = threading.Lock()

    @property
    def parallelism(self) -> int:
        return self._parallel

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        with self._lock:
            self.active += 1
        try:
            found = []
            for image in images:
                tag = tag_of(image)
                if tag in self.gates:
                    assert self.gates[tag].wait(DEADLINE_S)
                if tag in self.failing:
                    raise self.failing[tag]
                found.append([Detection(tag[1], self.name, 0.9, (4.0, 4.0, 20.0, 20.0))])
            return DetectionBatch(found)
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self.active_when_closed = self.active


class PairwiseAsyncDetector(TagDetector, AsyncDetector):
    """An async engine that holds each batch until a second one comes (or the last frame of
    ``last`` does), then finishes the newer one first: answers always come out of order."""

    def __init__(self, *, last: int) -> None:
        super().__init__(parallel=2)
        self.last = last
        self.most_held = 0
        self._held: list[tuple[Sequence[Image], DetectDone]] = []

    def submit(self, images: Sequence[Image], *, done: DetectDone) -> None:
        with self._lock:
            self._held.append((images, done))
            self.most_held = max(self.most_held, len(self._held))
            if len(self._held) < 2 and tag_of(images[0])[1] != self.last:
                return
            batches, self._held = self._held[::-1], []
        for held, finish in batches:
            finish(self.detect(held))


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch) -> dict[str, TagSource]:
    """The sources cameras open, by camera name (add one before its camera starts)."""
    found: dict[str, TagSource] = {}
    monkeypatch.setattr(camera_module, "open_source", lambda _cfg, *, camera, **_: found[camera])
    return found


def camera(
    sources: dict[str, TagSource],
    source: TagSource,
    service: DetectorService,
    crops: list[ReadyCrop],
    *,
    depth: int | None = None,
    motion: bool = False,
) -> CameraWorker:
    """A camera on ``source`` through ``service``, every detection sent to ``crops``."""
    sources[source.camera] = source
    config = CameraConfig.model_validate(
        {
            "name": source.camera,
            "source": {"type": "usb"},
            "fps": 10,
            "motion": {"enabled": motion},
        }
    )
    return CameraWorker(
        config,
        crops=CropConfig(mode="every_detection"),
        detector=lambda: service.client(source.camera),
        sink=crops.append,
        metrics=EdgeMetrics(),
        realtime=False,
        pipeline_depth=depth,
    )


def run_to_end(*workers: CameraWorker) -> None:
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            assert worker.finished.wait(DEADLINE_S)
    finally:
        for worker in workers:
            worker.stop()


def test_answers_that_come_out_of_order_are_tracked_and_sent_in_frame_order(
    sources: dict[str, TagSource],
) -> None:
    # given a camera keeping 2 frames in the service, on an engine that always answers the
    # newer of two frames first
    detector = PairwiseAsyncDetector(last=24)
    service = DetectorService(detector, per_camera=2)
    crops: list[ReadyCrop] = []
    worker = camera(sources, TagSource(1, 25), service, crops, depth=2)

    # when it plays its 25 frames
    run_to_end(worker)
    service.close()

    # then it had two frames in the engine at once, and every frame's crop went in order
    assert detector.most_held == 2
    assert worker.frames == 25 and worker.detect_errors == 0
    assert [c.detection.class_id for c in crops] == list(range(25))
    assert [c.captured_at for c in crops] == sorted(c.captured_at for c in crops)


def test_a_failure_on_one_frame_in_flight_skips_that_frame_only(
    sources: dict[str, TagSource],
) -> None:
    # given a camera keeping 2 frames in the service, whose detector fails on frame 4
    detector = TagDetector()
    detector.failing[(1, 4)] = DetectorError("runtime failed on frame 4")
    service = DetectorService(detector, per_camera=2)
    crops: list[ReadyCrop] = []
    worker = camera(sources, TagSource(1, 12), service, crops)

    # when it plays its 12 frames
    run_to_end(worker)
    service.close()

    # then frame 4 was skipped and counted, every other frame went, in order
    assert worker.frames == 12 and worker.detect_errors == 1
    assert [c.detection.class_id for c in crops] == [i for i in range(12) if i != 4]


def test_a_camera_stalled_in_its_source_or_in_the_engine_holds_up_no_other(
    sources: dict[str, TagSource],
) -> None:
    # given three cameras on one service, each keeping 2 frames in it: camera 1's source
    # stalls before its frame 6, camera 2's frame 3 hangs in the engine
    detector = TagDetector(parallel=2)
    hung = threading.Event()
    detector.gates[(2, 3)] = hung
    service = DetectorService(detector, per_camera=2, timeout_s=DEADLINE_S)
    stalled_source = TagSource(1, 15, hold_at=6)
    sent: dict[int, list[ReadyCrop]] = {1: [], 2: [], 3: []}
    stalled = camera(sources, stalled_source, service, sent[1])
    hanging = camera(sources, TagSource(2, 15), service, sent[2])
    free = camera(sources, TagSource(3, 40), service, sent[3])

    # when they run
    for worker in (stalled, hanging, free):
        worker.start()
    try:
        # then the third plays all of its frames while the other two are stuck
        assert free.finished.wait(DEADLINE_S)
        assert stalled_source.reached.is_set() and not stalled.finished.is_set()
        assert not hanging.finished.is_set()
        assert [c.detection.class_id for c in sent[3]] == list(range(40))
        # and once released, the other two finish every frame, in order
        stalled_source.release.set()
        hung.set()
        assert stalled.finished.wait(DEADLINE_S)
        assert hanging.finished.wait(DEADLINE_S)
    finally:
        stalled_source.release.set()
        hung.set()
        for worker in (stalled, hanging, free):
            worker.stop()
        service.close()
    assert [c.detection.class_id for c in sent[1]] == list(range(15))
    assert [c.detection.class_id for c in sent[2]] == list(range(15))
    assert stalled.detect_errors == hanging.detect_errors == 0


def test_a_model_swap_mid_stream_moves_the_camera_once_and_closes_the_old_one_drained(
    sources: dict[str, TagSource],
) -> None:
    # given a camera keeping 2 frames in the service, its source pausing before frame 10
    old, new = TagDetector("old"), TagDetector("new")
    service = DetectorService(old, per_camera=2)
    source = TagSource(1, 20, hold_at=10)
    crops: list[ReadyCrop] = []
    worker = camera(sources, source, service, crops)
    worker.start()
    try:
        assert source.reached.wait(DEADLINE_S)

        # when the new backend replaces the old one there, and the old one is retired
        replaced = service.replace(new)
        service.retire(replaced, timeout_s=DEADLINE_S)
        source.release.set()
        assert worker.finished.wait(DEADLINE_S)
    finally:
        source.release.set()
        worker.stop()
        service.close()

    # then no frame failed, frames 0-9 were detected by the old one and 10-19 by the new,
    # in order, and the old one was closed with nothing still in it
    assert replaced is old and worker.detect_errors == 0
    assert [c.detection.class_id for c in crops] == list(range(20))
    assert [c.detection.class_name for c in crops] == ["old"] * 10 + ["new"] * 10
    assert old.active_when_closed == 0


def test_with_motion_gating_each_frame_is_gated_after_the_frame_before_is_done(
    sources: dict[str, TagSource],
) -> None:
    # given a camera with motion gating on that asks for 2 frames in the service
    service = DetectorService(TagDetector(), per_camera=2)
    crops: list[ReadyCrop] = []
    worker = camera(sources, TagSource(1, 12), service, crops, depth=2, motion=True)
    seen: list[tuple[int, int]] = []  # (frame the gate looks at, frames done by then)
    decide = worker._gate.decide

    def watched(image: Image, **kwargs: object) -> object:
        seen.append((tag_of(image)[1], worker.frames))
        return decide(image, **kwargs)  # type: ignore[arg-type]

    worker._gate.decide = watched  # type: ignore[method-assign]

    # when it plays its 12 frames
    run_to_end(worker)
    service.close()

    # then the gate saw each frame once every frame before it was tracked and sent
    assert seen == [(index, index) for index in range(12)]
    assert worker.frames == 12


def test_a_stalled_source_holds_back_no_frame_already_detected(
    sources: dict[str, TagSource],
) -> None:
    # given a pipelined camera (no gating, two frames in flight) whose stream stalls
    # before frame 5
    service = DetectorService(TagDetector(), per_camera=2)
    crops: list[ReadyCrop] = []
    source = TagSource(1, 10, hold_at=5)
    worker = camera(sources, source, service, crops)
    worker.start()
    try:
        # when the stall lasts
        assert source.reached.wait(DEADLINE_S)
        deadline = threading.Event()
        for _ in range(int(DEADLINE_S * 10)):
            if len(crops) == 5:
                break
            deadline.wait(0.1)
        during = [crop.detection.class_id for crop in crops]
    finally:
        source.release.set()
        worker.stop()
        service.close()

    # then frames 0-4, read and detected before it, were all sent during it
    assert during == [0, 1, 2, 3, 4]
