"""The one post-processing of every ultralytics-exported detect model (YOLOv8 / YOLO11).

The raw output is ``(N, 4 + nc, anchors)``: per anchor cx, cy, w, h in input pixels followed by
``nc`` class scores that already went through the sigmoid (no objectness, no NMS in the graph).
Decoding follows ``ultralytics.utils.nms.non_max_suppression`` with its predict defaults: best
class per anchor, strict ``score > conf``, at most 30,000 candidates, class-aware greedy NMS
(boxes offset by ``class * 7680``), ``max_det`` kept, then boxes mapped back to the frame and
clipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import Detection, DetectionBatch, StageTimes
from lensflow.shared.detectors.preprocess import FloatArray, Letterbox, fixed_batches, preprocess
from lensflow.shared.errors import ImageError, ModelError

IntArray = npt.NDArray[np.int64]

MAX_CANDIDATES = 30_000  # ultralytics' max_nms
CLASS_OFFSET = 7680.0  # ultralytics' max_wh: separates classes in one NMS pass


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    """Thresholds of the YOLO decode (ultralytics' predict defaults)."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf <= 1.0 or not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got {self.conf}, {self.iou}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")


def detect_yolo(
    images: Sequence[Image],
    *,
    infer: Callable[[FloatArray], npt.NDArray[np.floating]],
    input_size: tuple[int, int],
    batch: int | None,
    names: Mapping[int, str],
    settings: DecodeSettings,
    source: str,
) -> DetectionBatch:
    """The whole YOLO path around one runtime's inference call, timed per stage.

    Args:
        images: BGR uint8 frames of any sizes.
        infer: runs the model on an (n, 3, H, W) float32 tensor, returns its raw output.
        input_size: (height, width) to letterbox to.
        batch: the model's fixed batch size (frames then go in chunks), None if dynamic.
        names: class id -> name.
        settings: conf / iou / max_det.
        source: the model file, named in errors.

    Returns:
        Per frame, its detections; and the stage times of the batch.

    Raises:
        ImageError: a frame is not a BGR uint8 (H, W, 3) array.
        ModelError: the output is not a YOLO detect head.
    """
    if not images:
        return DetectionBatch(detections=[])
    start = time.perf_counter()
    try:
        prepared = preprocess(images, input_size=input_size)
    except ValueError as err:
        raise ImageError(f"{source}: {err}") from err
    after_pre = time.perf_counter()
    chunks = [infer(chunk)[:valid] for chunk, valid in fixed_batches(prepared.tensor, batch)]
    output = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    after_infer = time.perf_counter()
    detections = decode_yolo(
        output, letterboxes=prepared.letterboxes, names=names, settings=settings, source=source
    )
    end = time.perf_counter()
    times = StageTimes(
        pre_ms=(after_pre - start) * 1e3,
        infer_ms=(after_infer - after_pre) * 1e3,
        post_ms=(end - after_infer) * 1e3,
    )
    return DetectionBatch(detections=detections, times=times)


def validate_output_shape(
    shape: Sequence[int | None], *, num_classes: int, batch: int | None, source: str
) -> None:
    """Check that a model output is a YOLO detect head ``(N, 4 + nc, anchors)``.

    Args:
        shape: the output shape; None (or a negative number) for a dynamic dimension.
        num_classes: nc, from the model's metadata.
        batch: the expected N, or None to accept any.
        source: the model file, named in the error.

    Raises:
        ModelError: the shape does not fit.
    """
    dims = [d if d is not None and d >= 0 else None for d in shape]
    fits = (
        len(dims) == 3
        and dims[1] in (None, 4 + num_classes)
        and (batch is None or dims[0] in (None, batch))
    )
    if not fits:
        got = "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
        raise ModelError(
            f"{source}: expected a YOLO detect output of shape (N, 4+nc, anchors) = "
            f"(N, {4 + num_classes}, anchors) with nc={num_classes} from the metadata, got {got}"
        )


def decode_yolo(
    output: npt.NDArray[np.floating],
    *,
    letterboxes: Sequence[Letterbox],
    names: Mapping[int, str],
    settings: DecodeSettings,
    source: str,
) -> list[list[Detection]]:
    """Turn a raw ``(N, 4 + nc, anchors)`` output into detections in frame pixels.

    Args:
        output: the model output for N frames (float16 is converted).
        letterboxes: each frame's letterbox, in batch order.
        names: class id -> name (nc = len(names)).
        settings: conf / iou / max_det.
        source: the model file, named in errors.

    Returns:
        Per frame, detections sorted by descending score.

    Raises:
        ModelError: the output is not a YOLO detect head for these names and this batch.
    """
    validate_output_shape(
        output.shape, num_classes=len(names), batch=len(letterboxes), source=source
    )
    return [
        _decode_one(np.asarray(item, dtype=np.float32).T, box, names, settings)
        for item, box in zip(output, letterboxes, strict=True)
    ]


def _decode_one(
    rows: FloatArray, box: Letterbox, names: Mapping[int, str], settings: DecodeSettings
) -> list[Detection]:
    """Decode one frame's (anchors, 4 + nc) rows."""
    class_scores = rows[:, 4:]
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), classes]
    keep = np.flatnonzero(scores > settings.conf)
    if keep.size > MAX_CANDIDATES:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_CANDIDATES]]
    boxes = xywh_to_xyxy(rows[keep, :4])
    scores, classes = scores[keep], classes[keep]
    kept = class_aware_nms(boxes, scores, classes, iou=settings.iou)[: settings.max_det]
    frame_boxes = box.to_frame(boxes[kept])
    return [
        Detection(
            class_id=int(c),
            class_name=names.get(int(c), str(int(c))),
            score=float(s),
            box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
        )
        for c, s, b in zip(classes[kept], scores[kept], frame_boxes, strict=True)
    ]


def xywh_to_xyxy(boxes: FloatArray) -> FloatArray:
    """(K, 4) centre x, centre y, width, height -> x1, y1, x2, y2."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def class_aware_nms(
    boxes: FloatArray, scores: FloatArray, classes: npt.NDArray[np.integer], *, iou: float
) -> IntArray:
    """Greedy NMS per class in one pass: boxes of different classes never suppress each other.

    Args:
        boxes: (K, 4) x1, y1, x2, y2.
        scores: (K,) scores.
        classes: (K,) class ids.
        iou: boxes overlapping a kept box by more than this are dropped.

    Returns:
        Indices of the kept boxes, by descending score.
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    offset = classes.astype(np.float32)[:, None] * np.float32(CLASS_OFFSET)
    return nms(boxes + offset, scores, iou=iou)


def nms(boxes: FloatArray, scores: FloatArray, *, iou: float) -> IntArray:
    """Greedy NMS (torchvision semantics): keep the best box, drop those with IoU > iou, repeat.

    Each step compares the kept box with all remaining ones at once (vectorised).

    Args:
        boxes: (K, 4) x1, y1, x2, y2.
        scores: (K,) scores.
        iou: the suppression threshold.

    Returns:
        Indices of the kept boxes, by descending score.
    """
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 for empty boxes: dropped
            overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= iou]
    return np.array(keep, dtype=np.int64)
