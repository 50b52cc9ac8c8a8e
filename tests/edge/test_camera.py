"""A camera's loop on sources that fail: one line per failure, counters by reason, no bomb cropped.

The detector is an in-memory one that finds an object in the middle of every frame: what is
under test is what reaches it (and the sink), not detection.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import pytest

from lensflow.edge.camera import CameraWorker, ReadyCrop
from lensflow.edge.metrics import EdgeMetrics
from lensflow.edge.sample_video import make_sample_video
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.edge import CameraConfig, CropConfig
from lensflow.shared.detectors.base import Detection, DetectionBatch, DetectorBackend, ModelInfo
from tests.support.bomb_headers import BOMB_KINDS, bomb_header


class CentreDetector(DetectorBackend):
    """Finds one person covering the middle of every frame; remembers the frame sizes."""

    info = ModelInfo(path="in-memory", names={0: "person"}, input_size=(640, 640))

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        found = []
        for image in images:
            height, width = image.shape[:2]
            self.sizes.append((width, height))
            box = (width * 0.25, height * 0.25, width * 0.75, height * 0.75)
            found.append([Detection(0, "person", 0.9, box)])
        return DetectionBatch(found)


def run_camera(
    source: dict, detector: CentreDetector, crops_config: CropConfig | None = None
) -> tuple[CameraWorker, list[ReadyCrop]]:
    crops: list[ReadyCrop] = []
    worker = CameraWorker(
        CameraConfig.model_validate({"name": "cam", "source": source, "fps": 10}),
        crops=crops_config or CropConfig(mode="every_detection"),
        detector=lambda: detector,
        sink=crops.append,
        metrics=EdgeMetrics(),
        realtime=False,
    )
    worker.start()
    return worker, crops


def failures(worker: CameraWorker, reason: str) -> float:
    worker.sync_metrics()  # what the heartbeat does
    return worker._metrics.source_failures.labels("cam", reason)._value.get()


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_missing_video_is_a_warning_line_and_a_counted_reason_and_played_once_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a camera on a video that is not there yet
    video = make_sample_video(tmp_path / "made" / "street.avi", frames=10, fps=10)
    path = tmp_path / "street.avi"
    detector = CentreDetector()

    # when the camera runs, and the video appears later
    with caplog.at_level(logging.INFO):
        worker, crops = run_camera({"type": "video", "path": str(path)}, detector)
        try:
            assert wait_for(lambda: failures(worker, "missing") >= 1, timeout_s=5)
            assert worker.alive  # waiting for it, not stopped
            shutil.move(video, path)
            assert worker.finished.wait(15)
        finally:
            worker.stop()

    # then the failure was one warning line naming camera, file and reason, with no
    # traceback; the video was then played
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == failures(worker, "missing")
    assert all(r.exc_info is None for r in caplog.records)
    line = warnings[0].getMessage()
    assert "camera cam" in line and str(path) in line and "missing" in line
    assert worker.frames == 10 and len(crops) == 10


@pytest.mark.parametrize("kind", BOMB_KINDS)
def test_a_bomb_in_a_folder_is_skipped_counted_and_never_cropped(
    tmp_path: Path, sample_images: dict[str, Image], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    # given a real photo and a 20000x20000 bomb of the format
    cv2.imwrite(str(tmp_path / "a.jpg"), sample_images["bus"])
    (tmp_path / f"b.{kind}").write_bytes(bomb_header(kind))
    detector = CentreDetector()

    # when the camera reads the folder
    with caplog.at_level(logging.WARNING):
        worker, crops = run_camera({"type": "folder", "path": str(tmp_path)}, detector)
        assert worker.finished.wait(15)

    # then only the photo reached the detector and the sink; the bomb is counted too_large
    height, width = sample_images["bus"].shape[:2]
    assert detector.sizes == [(width, height)]
    assert [c.frame_size for c in crops] == [(width, height)]
    assert failures(worker, "too_large") == 1
    assert worker._metrics.frames_skipped.labels("cam")._value.get() == 1
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "too_large" in line and f"b.{kind}" in line


@pytest.mark.parametrize("budget", [None, 10_000_000.0], ids=["no-budget", "budget"])
def test_every_detection_ranks_its_crops_only_for_a_byte_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: float | None
) -> None:
    # given a camera sending every detection, with or without a byte budget
    video = make_sample_video(tmp_path / "street.avi", frames=6, fps=10)
    ranked: list[float] = []
    quality = CameraWorker._quality

    def counted(image: object, box: tuple[float, float, float, float], score: float) -> float:
        ranked.append(quality(image, box, score))
        return ranked[-1]

    monkeypatch.setattr(CameraWorker, "_quality", staticmethod(counted))
    config = CropConfig(mode="every_detection", budget_bytes_per_s=budget)

    # when it plays a video
    worker, crops = run_camera({"type": "video", "path": str(video)}, CentreDetector(), config)
    try:
        assert worker.finished.wait(15)
    finally:
        worker.stop()

    # then every detection went; its usefulness (sharpness) was measured only to rank crops
    # waiting for the budget
    assert len(crops) == 6
    assert len(ranked) == (0 if budget is None else 6)
