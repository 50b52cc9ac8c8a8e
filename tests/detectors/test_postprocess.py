"""YOLO decode on crafted output tensors: thresholds, class-aware NMS, un-letterbox, shapes."""

from __future__ import annotations

import numpy as np
import pytest

from lensflow.shared.detectors.base import Detection
from lensflow.shared.detectors.postprocess import (
    DecodeSettings,
    class_aware_nms,
    decode_yolo,
    nms,
    validate_output_shape,
)
from lensflow.shared.detectors.preprocess import letterbox_geometry
from lensflow.shared.errors import ModelError

NAMES = {0: "person", 1: "car"}
IDENTITY = letterbox_geometry((640, 640), (640, 640))  # frame == input: no scale, no pad


def raw_output(*anchors: tuple[float, ...]) -> np.ndarray:
    """(1, 4 + nc, A) from rows of cx, cy, w, h, score_0, score_1."""
    return np.array(anchors, dtype=np.float32).T[None]


def decode(output, *, letterboxes=(IDENTITY,), **settings):
    return decode_yolo(
        output,
        letterboxes=list(letterboxes),
        names=NAMES,
        settings=DecodeSettings(**settings),
        source="model.onnx",
    )


def summary(detections: list[Detection]) -> list[tuple[str, float, list[float]]]:
    return [(d.class_name, round(d.score, 3), [round(v, 1) for v in d.box]) for d in detections]


def test_decode_keeps_best_per_class_and_drops_low_scores():
    output = raw_output(
        (100, 100, 40, 80, 0.90, 0.10),  # person A
        (102, 101, 40, 80, 0.80, 0.05),  # person overlapping A (IoU 0.9): suppressed
        (100, 100, 40, 80, 0.10, 0.85),  # a car on top of A: other class, kept
        (400, 300, 60, 60, 0.20, 0.00),  # below conf 0.25: dropped
        (500, 500, 20, 20, 0.25, 0.00),  # exactly conf: dropped (strict >, like ultralytics)
        (300, 300, 50, 50, 0.00, 0.60),  # car B, alone
    )
    [detections] = decode(output, conf=0.25, iou=0.7)
    assert summary(detections) == [
        ("person", 0.9, [80.0, 60.0, 120.0, 140.0]),
        ("car", 0.85, [80.0, 60.0, 120.0, 140.0]),
        ("car", 0.6, [275.0, 275.0, 325.0, 325.0]),
    ]
    assert [d.class_id for d in detections] == [0, 1, 1]


def test_overlap_at_or_below_iou_threshold_is_kept():
    # two 100x100 boxes shifted by 50 px: IoU = 50*100 / (2*10000 - 5000) = 1/3
    output = raw_output((100, 100, 100, 100, 0.9, 0.0), (150, 100, 100, 100, 0.8, 0.0))
    assert len(decode(output, iou=0.34)[0]) == 2
    assert len(decode(output, iou=0.33)[0]) == 1


def test_max_det_keeps_the_best_scores():
    output = raw_output(*[(50.0 * i + 20, 20, 10, 10, 0.3 + 0.05 * i, 0.0) for i in range(8)])
    [detections] = decode(output, max_det=3)
    assert [round(d.score, 2) for d in detections] == [0.65, 0.6, 0.55]


def test_boxes_are_mapped_back_through_the_letterbox_and_clipped():
    # a 320x1280 frame in a 640x640 input: scale 0.5, 240 px of padding above and below
    box = letterbox_geometry((320, 1280), (640, 640))
    output = raw_output(
        (320, 320, 100, 80, 0.9, 0.0),  # in the middle of the picture
        (20, 250, 60, 40, 0.0, 0.8),  # reaches into the padding and past the left edge
    )
    [detections] = decode(output, letterboxes=[box])
    assert summary(detections) == [
        ("person", 0.9, [540.0, 80.0, 740.0, 240.0]),
        ("car", 0.8, [0.0, 0.0, 100.0, 60.0]),
    ]


def test_each_frame_of_a_batch_is_decoded_with_its_own_letterbox():
    frames = [
        letterbox_geometry((640, 640), (640, 640)),
        letterbox_geometry((320, 320), (640, 640)),
    ]
    single = raw_output((100, 100, 20, 20, 0.9, 0.0))
    output = np.concatenate([single, single])
    first, second = decode(output, letterboxes=frames)
    assert first[0].box == (90.0, 90.0, 110.0, 110.0)
    assert second[0].box == (45.0, 45.0, 55.0, 55.0)  # half-size frame: half the pixels


def test_float16_output_and_empty_results():
    output = raw_output((100, 100, 20, 20, 0.9, 0.0)).astype(np.float16)
    assert len(decode(output)[0]) == 1
    assert decode(raw_output((100, 100, 20, 20, 0.1, 0.1))) == [[]]


def test_class_aware_nms_keeps_overlapping_boxes_of_different_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert class_aware_nms(boxes, scores, np.array([0, 1, 0]), iou=0.5).tolist() == [0, 1]
    # without classes the same boxes suppress each other
    assert nms(boxes, scores, iou=0.5).tolist() == [0]


def test_nms_of_nothing_is_nothing():
    empty = np.empty((0, 4), np.float32)
    assert class_aware_nms(empty, np.empty(0, np.float32), np.empty(0, int), iou=0.5).size == 0


@pytest.mark.parametrize(
    ("shape", "got"),
    [
        ((1, 10), "(1, 10)"),  # a classifier's logits
        ((1, 84, 8400), "(1, 84, 8400)"),  # a COCO-80 model where metadata says 2 classes
        ((1, 8400, 6), "(1, 8400, 6)"),  # transposed (anchors first)
        ((1, 300, 6), "(1, 300, 6)"),  # an end2end export (NMS inside the model)
    ],
)
def test_output_that_is_not_a_yolo_head_is_a_model_error(shape, got):
    with pytest.raises(ModelError) as caught:
        validate_output_shape(shape, num_classes=2, batch=1, source="weird.onnx")
    message = str(caught.value)
    assert "weird.onnx" in message
    assert "(N, 4+nc, anchors) = (N, 6, anchors) with nc=2" in message
    assert f"got {got}" in message


def test_decode_rejects_an_output_whose_batch_differs_from_the_frames():
    output = np.zeros((2, 6, 10), np.float32)
    with pytest.raises(ModelError, match=r"model\.onnx: expected .* got \(2, 6, 10\)"):
        decode(output, letterboxes=[IDENTITY])


def test_dynamic_dimensions_are_accepted_and_shown_as_question_marks():
    validate_output_shape((None, 6, None), num_classes=2, batch=None, source="m.onnx")
    with pytest.raises(ModelError, match=r"got \(\?, 7, \?\)"):
        validate_output_shape((-1, 7, None), num_classes=2, batch=None, source="m.onnx")


@pytest.mark.parametrize(
    "settings",
    [
        {"conf": 1.5},  # conf is a probability
        {"iou": -0.1},  # so is iou
        {"max_det": 0},  # at least one detection
    ],
)
def test_decode_settings_reject_impossible_values(settings):
    with pytest.raises(ValueError):
        DecodeSettings(**settings)
