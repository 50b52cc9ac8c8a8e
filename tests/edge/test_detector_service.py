"""The detector service shared by an agent's cameras: order, isolation, swaps and errors.

The backends are in-memory ones that read a tag (camera, frame) written into each frame's
first pixel and answer it back as the detection's class id, so every answer can be checked
against the frame it belongs to. One answers from a pool of worker threads, the other
through an async path that finishes batches out of their order, as OpenVINO's queue may.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from lensflow.edge.camera import CameraWorker, ReadyCrop
from lensflow.edge.detector_service import DetectorService
from lensflow.edge.metrics import EdgeMetrics
from lensflow.edge.sample_video import make_sample_video
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


def tagged(camera: int, frame: int) -> Image:
    """A tiny frame carrying (camera, frame) in its first pixel."""
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[0, 0] = (camera, frame % 256, frame // 256)
    return image


def tag_of(image: Image) -> int:
    camera, low, high = (int(v) for v in image[0, 0])
    return camera * 100_000 + high * 256 + low


class TagDetector(DetectorBackend):
    """Answers each frame's tag as its class id; frames whose tag is gated wait for the gate."""

    info = ModelInfo(path="in-memory", names={0: "thing"}, input_size=(4, 4))

    def __init__(self, name: str = "old", *, parallel: int = 3) -> None:
        self.name, self._parallel = name, parallel
        self.gates: dict[int, threading.Event] = {}
        self.failing: dict[int, Exception] = {}
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
                    self.gates[tag].wait()
                if tag in self.failing:
                    raise self.failing[tag]
                found.append([Detection(tag, self.name, 0.9, (0.0, 0.0, 2.0, 2.0))])
            return DetectionBatch(found)
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self.active_when_closed = self.active


class ShufflingAsyncDetector(TagDetector, AsyncDetector):
    """An async engine that finishes the batches it holds newest first."""

    def __init__(self, name: str = "old") -> None:
        super().__init__(name, parallel=4)
        self._held: list[tuple[Sequence[Image], DetectDone]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, images: Sequence[Image], *, done: DetectDone) -> None:
        with self._cond:
            self._held.append((images, done))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._held))
                time.sleep(0.001)  # let a few batches gather, so they can finish out of order
                batch, self._held = self._held[::-1], []
            for images, done in batch:
                if any(tag_of(image) in self.gates for image in images):  # one request hangs
                    threading.Thread(target=self._finish, args=(images, done), daemon=True).start()
                else:
                    self._finish(images, done)

    def _finish(self, images: Sequence[Image], done: DetectDone) -> None:
        try:
            done(self.detect(images))
        except Exception as err:
            done(err)


BACKENDS: list[Callable[[], TagDetector]] = [
    TagDetector,  # a pool of 3 worker threads (LiteRT interpreters, ONNX Runtime runs)
    ShufflingAsyncDetector,  # an async engine finishing out of order (OpenVINO's queue)
]


def run_cameras(
    service: DetectorService, cameras: dict[int, Callable[[int], bool]]
) -> list[threading.Thread]:
    """Start one thread per camera calling ``step(frame)`` until it returns False."""
    threads = []
    for camera, step in cameras.items():

        def loop(step: Callable[[int], bool] = step) -> None:
            frame = 0
            while step(frame):
                frame += 1

        thread = threading.Thread(target=loop, name=f"cam{camera}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def join_all(threads: list[threading.Thread], *, deadline: float) -> bool:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("backend", BACKENDS, ids=["worker-pool", "async-out-of-order"])
def test_each_camera_gets_its_own_frames_back_in_order(backend: Callable[[], TagDetector]) -> None:
    # given four cameras submitting 60 frames each at once to one service
    service = DetectorService(backend())
    answers: dict[int, list[int]] = defaultdict(list)

    def camera(index: int) -> Callable[[int], bool]:
        client = service.client(f"cam{index}")

        def step(frame: int) -> bool:
            (found,) = client.detect([tagged(index, frame)]).detections
            answers[index].append(found[0].class_id)
            return frame + 1 < 60

        return step

    # when they all run
    threads = run_cameras(service, {i: camera(i) for i in range(1, 5)})
    assert join_all(threads, deadline=time.monotonic() + DEADLINE_S)
    service.close()

    # then each camera got exactly its own frames' answers, in its frame order
    for index in range(1, 5):
        assert answers[index] == [index * 100_000 + f for f in range(60)]


@pytest.mark.parametrize("backend", BACKENDS, ids=["worker-pool", "async-out-of-order"])
def test_a_frame_that_hangs_holds_up_no_other_camera_nor_its_own_next_frames(
    backend: Callable[[], TagDetector],
) -> None:
    # given a service whose answers are awaited 0.3 s, and camera 1's frame 0 hangs the engine
    detector = backend()
    gate = threading.Event()
    detector.gates[1 * 100_000] = gate
    service = DetectorService(detector, timeout_s=0.3)
    stuck, other = service.client("cam1"), service.client("cam2")

    # when camera 1 gives up on it, then camera 2 runs 200 frames and camera 1 its next ones
    with pytest.raises(DetectorError, match="within 0.3 s"):
        stuck.detect([tagged(1, 0)])
    deadline = time.monotonic() + DEADLINE_S
    for frame in range(200):
        (found,) = other.detect([tagged(2, frame)]).detections
        assert found[0].class_id == 2 * 100_000 + frame
    for frame in range(1, 20):
        (found,) = stuck.detect([tagged(1, frame)]).detections
        assert found[0].class_id == 1 * 100_000 + frame

    # then all of it happened while camera 1's frame 0 was still stuck
    assert time.monotonic() < deadline
    assert not gate.is_set()
    gate.set()
    service.close()


@pytest.mark.parametrize("backend", BACKENDS, ids=["worker-pool", "async-out-of-order"])
def test_a_camera_has_at_most_per_camera_batches_waiting(
    backend: Callable[[], TagDetector],
) -> None:
    # given camera 1 waiting on a frame that hangs (from a thread of its own)
    detector = backend()
    gate = threading.Event()
    detector.gates[1 * 100_000] = gate
    service = DetectorService(detector, per_camera=1)
    waiting = threading.Thread(target=service.client("cam1").detect, args=([tagged(1, 0)],))
    waiting.start()
    give_up = time.monotonic() + DEADLINE_S
    while not detector.active:  # until the frame is in the engine
        assert time.monotonic() < give_up
        time.sleep(0.005)

    # when camera 1 submits another frame meanwhile, and camera 2 one
    # then camera 1's is refused at once (not queued), camera 2's is detected
    with pytest.raises(DetectorError, match="still in the detector"):
        service.client("cam1").detect([tagged(1, 1)])
    assert service.client("cam2").detect([tagged(2, 0)]).detections[0][0].class_id == 200_000
    gate.set()
    waiting.join(DEADLINE_S)
    assert service.client("cam1").detect([tagged(1, 2)]).detections[0][0].class_id == 100_002
    service.close()


@pytest.mark.parametrize("backend", BACKENDS, ids=["worker-pool", "async-out-of-order"])
def test_a_swap_under_load_moves_every_camera_once_and_closes_the_old_one_drained(
    backend: Callable[[], TagDetector],
) -> None:
    # given three cameras detecting without pause on the old backend
    old = backend()
    service = DetectorService(old)
    seen: dict[int, list[str]] = defaultdict(list)
    errors: list[BaseException] = []
    stop = threading.Event()
    progress = threading.Condition()

    def camera(index: int) -> Callable[[int], bool]:
        client = service.client(f"cam{index}")

        def step(frame: int) -> bool:
            try:
                (found,) = client.detect([tagged(index, frame)]).detections
            except BaseException as err:
                errors.append(err)
                return False
            with progress:
                seen[index].append(found[0].class_name)
                progress.notify_all()
            return not stop.is_set()

        return step

    threads = run_cameras(service, {i: camera(i) for i in range(1, 4)})

    def each_camera_has(name: str, count: int) -> bool:
        return all(seen[i].count(name) >= count for i in range(1, 4))

    with progress:
        assert progress.wait_for(lambda: each_camera_has("old", 10), DEADLINE_S)

    # when the new backend replaces it mid-stream and the old one is retired
    new = type(old)("new")  # the same kind, answering "new"
    replaced = service.replace(new)
    service.retire(replaced, timeout_s=DEADLINE_S)
    with progress:
        assert progress.wait_for(lambda: each_camera_has("new", 10), DEADLINE_S)
    stop.set()
    assert join_all(threads, deadline=time.monotonic() + DEADLINE_S)
    service.close()

    # then no frame failed, each camera went old -> new once and never back, and the old
    # backend was closed with nothing still running in it
    assert errors == []
    assert replaced is old
    for index in range(1, 4):
        names = seen[index]
        switch = names.index("new")
        assert set(names[:switch]) == {"old"} and set(names[switch:]) == {"new"}
    assert old.active_when_closed == 0
    assert new.active_when_closed == 0


@pytest.mark.parametrize("backend", BACKENDS, ids=["worker-pool", "async-out-of-order"])
def test_the_backends_errors_reach_the_camera_as_raised(
    backend: Callable[[], TagDetector],
) -> None:
    # given a backend that fails with a DetectorError on one frame, a ValueError on another
    detector = backend()
    detector.failing[3] = DetectorError("runtime failed on frame 3")
    detector.failing[4] = ValueError("a bug")
    service = DetectorService(detector)
    client = service.client("cam0")

    # then the camera gets each error as the backend raised it, and the next frame works
    with pytest.raises(DetectorError, match="frame 3"):
        client.detect([tagged(0, 3)])
    with pytest.raises(ValueError, match="a bug"):
        client.detect([tagged(0, 4)])
    assert client.detect([tagged(0, 5)]).detections[0][0].class_id == 5
    service.close()
    with pytest.raises(DetectorError, match="closed"):
        client.detect([tagged(0, 6)])


class EveryOtherFails(DetectorBackend):
    """Finds one object in the middle of a frame; fails on every second call."""

    info = ModelInfo(path="in-memory", names={0: "person"}, input_size=(640, 640))

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def parallelism(self) -> int:
        return 2

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        with self._lock:
            self.calls += 1
            fail = self.calls % 2 == 0
        if fail:
            raise DetectorError("runtime failed")
        height, width = images[0].shape[:2]
        box = (width * 0.25, height * 0.25, width * 0.75, height * 0.75)
        return DetectionBatch([[Detection(0, "person", 0.9, box)]])


def camera_worker(
    name: str, source: dict, service: DetectorService, sink: list[ReadyCrop]
) -> CameraWorker:
    return CameraWorker(
        CameraConfig.model_validate({"name": name, "source": source, "fps": 10}),
        crops=CropConfig(mode="every_detection"),
        detector=lambda: service.client(name),
        sink=sink.append,
        metrics=EdgeMetrics(),
        realtime=False,
    )


def test_cameras_through_the_service_skip_and_count_failed_frames_and_ignore_a_dead_source(
    tmp_path: Path,
) -> None:
    # given two cameras sharing a service: one on a 12-frame video, one on a video that is
    # not there (its source retries and never gives a frame)
    video = make_sample_video(tmp_path / "clip.avi", frames=12, fps=10)
    service = DetectorService(EveryOtherFails())
    crops: list[ReadyCrop] = []
    playing = camera_worker("playing", {"type": "video", "path": str(video)}, service, crops)
    missing = camera_worker(
        "missing", {"type": "video", "path": str(tmp_path / "none.avi")}, service, []
    )

    # when both run
    missing.start()
    playing.start()
    try:
        assert playing.finished.wait(DEADLINE_S)  # the dead source held nothing up
    finally:
        playing.stop()
        missing.stop()
        service.close()

    # then every frame was read, the failed half skipped and counted, the rest cropped
    assert playing.frames == 12
    assert playing.detect_errors == 6
    assert len(crops) == 6
    assert missing.frames == 0


def test_an_answer_racing_its_cameras_time_out_is_uncounted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an engine whose answer is handed over slowly (after its counts were released),
    # and a camera that times out in between
    from lensflow.edge import detector_service as service_module

    store = service_module._Work._store

    def slow_store(self: object, result: object) -> None:
        time.sleep(0.4)
        store(self, result)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module._Work, "_store", slow_store)
    service = DetectorService(TagDetector(parallel=1), timeout_s=0.2, per_camera=2)
    pending = service.submit([tagged(1, 0)], camera="cam")

    # when the camera gives up on the batch while the answer is being handed over
    with pytest.raises(DetectorError):
        pending.result()
    time.sleep(0.5)

    # then the batch was uncounted once: nothing in flight, nothing pending for the camera
    counts = (service._engine.inflight, dict(service._pending))
    service.close()
    assert counts == (0, {})
