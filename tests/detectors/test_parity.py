"""Our backends against ultralytics' own predict on the same exported artifact.

Same count, each box matched at IoU >= 0.9 (greedy, best pair first, same class), and score
difference <= 0.02, on bus.jpg and zidane.jpg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lensflow.shared.detectors.base import Detection
from lensflow.shared.detectors.onnxruntime import OnnxRuntimeDetector
from lensflow.shared.detectors.openvino import OpenVinoDetector

pytestmark = [
    pytest.mark.integration,
    # exporting with ultralytics warns about torch's legacy exporter and tracing
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean"),
]

MIN_IOU = 0.9
MAX_SCORE_DIFF = 0.02


def ultralytics_predict(yolo_class: Any, artifact: Path, image: np.ndarray, **options: Any):
    """(classes, scores, xyxy boxes) from ultralytics' predict on one BGR frame."""
    model = yolo_class(str(artifact), task="detect")
    [result] = model.predict(image, verbose=False, save=False, **options)
    boxes = result.boxes
    return boxes.cls.numpy().astype(int), boxes.conf.numpy(), boxes.xyxy.numpy()


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) x1, y1, x2, y2 boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def match(ours: list[Detection], theirs: tuple[np.ndarray, ...]) -> list[tuple[float, float]]:
    """Greedy one-to-one matching by IoU (same class only): (IoU, |score diff|) per pair."""
    classes, scores, boxes = theirs
    mine = np.array([d.box for d in ours], np.float32).reshape(-1, 4)
    ious = iou_matrix(mine, boxes)
    ious[np.array([d.class_id for d in ours])[:, None] != classes[None, :]] = -1.0
    pairs = []
    for _ in range(min(ious.shape)):
        i, j = np.unravel_index(np.argmax(ious), ious.shape)
        pairs.append((float(ious[i, j]), abs(ours[i].score - float(scores[j]))))
        ious[i, :] = ious[:, j] = -1.0
    return pairs


def assert_parity(ours: list[Detection], theirs: tuple[np.ndarray, ...]) -> None:
    assert len(ours) == len(theirs[0]), f"{len(ours)} detections, ultralytics {len(theirs[0])}"
    pairs = match(ours, theirs)
    worst_iou = min((iou for iou, _ in pairs), default=1.0)
    worst_score = max((diff for _, diff in pairs), default=0.0)
    assert worst_iou >= MIN_IOU, f"a box matches at IoU {worst_iou:.4f} only"
    assert worst_score <= MAX_SCORE_DIFF, f"a score differs by {worst_score:.4f}"


@pytest.mark.parametrize(
    ("artifact", "backend"),
    [
        ("yolo_onnx", OnnxRuntimeDetector),  # YOLOv8s, 2 classes, ONNX
        ("yolo_openvino", OpenVinoDetector),  # the same weights as an OpenVINO IR
    ],
)
def test_backend_matches_ultralytics_on_real_weights(
    artifact, backend, request, yolo_class, sample_images
):
    path = request.getfixturevalue(artifact)
    detector = backend(path)
    images = [sample_images["bus"], sample_images["zidane"]]
    ours = detector.detect(images).detections  # one batch of both frames
    assert len(ours[0]) >= 3, "the real model sees the people in front of the bus"
    for image, detections in zip(images, ours, strict=True):
        theirs = ultralytics_predict(yolo_class, path, image, imgsz=640, conf=0.25, iou=0.7)
        assert_parity(detections, theirs)


@pytest.mark.parametrize("backend", [OnnxRuntimeDetector, OpenVinoDetector])
def test_backend_agrees_with_ultralytics_on_random_yolo11n(
    backend, yolo11n_onnx, yolo_class, sample_images
):
    # Random weights give near-constant scores (~1e-4) on degenerate boxes: NMS then depends on
    # how ties are ordered, so only what is well defined is compared, at a tiny conf.
    conf = 2e-5
    detector = backend(yolo11n_onnx, conf=conf, max_det=50)
    model = yolo_class(str(yolo11n_onnx), task="detect")
    for image in (sample_images["bus"], sample_images["zidane"]):
        [ours] = detector.detect([image]).detections
        [result] = model.predict(image, imgsz=320, conf=conf, max_det=50, verbose=False)
        assert detector.info.names == result.names == {i: str(i) for i in range(80)}
        assert detector.info.input_size == (320, 320) == tuple(model.predictor.imgsz)
        assert 0 < len(ours) <= 50
        assert max(d.score for d in ours) == pytest.approx(float(result.boxes.conf.max()), abs=1e-6)
        height, width = image.shape[:2]
        assert all(0 <= d.box[0] <= d.box[2] <= width for d in ours)
        assert all(0 <= d.box[1] <= d.box[3] <= height for d in ours)
