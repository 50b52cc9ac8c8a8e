"""What TFLite's ``TFLite_Detection_PostProcess`` op does, in numpy.

Box encodings ``(ty, tx, th, tw)`` against anchors ``(yc, xc, h, w)``::

    y = ty / y_scale * h_a + yc_a        x = tx / x_scale * w_a + xc_a
    h = exp(th / h_scale) * h_a          w = exp(tw / w_scale) * w_a

then scores: class 0 is the background and is skipped. The op's "fast" NMS (what Google's
SSDs use) takes each anchor's best class and suppresses across classes; its "regular" NMS
suppresses within each class. Kept: scores above the op's threshold, at most
``max_detections``, best first; class ids count from the first non-background class, as the
labels file does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lensflow.shared.detectors.base import Detection
from lensflow.shared.detectors.postprocess import class_aware_nms, nms
from lensflow.shared.detectors.tflite_ssd import DecodeOptions

FloatArray = npt.NDArray[np.float32]


def decode_boxes(
    encodings: FloatArray, anchors: FloatArray, scales: tuple[float, float, float, float]
) -> FloatArray:
    """``(N, 4)`` encodings → ``(N, 4)`` normalised ``x1, y1, x2, y2``."""
    y_scale, x_scale, h_scale, w_scale = scales
    y_a, x_a, h_a, w_a = anchors.T
    ty, tx, th, tw = encodings.T
    y = ty / y_scale * h_a + y_a
    x = tx / x_scale * w_a + x_a
    half_h = np.exp(th / h_scale) * h_a / 2
    half_w = np.exp(tw / w_scale) * w_a / 2
    return np.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=1).astype(np.float32)


def decode_ssd(
    encodings: FloatArray,
    scores: FloatArray,
    *,
    anchors: FloatArray,
    options: DecodeOptions,
    conf: float,
    frame: tuple[int, int],
    names: dict[int, str],
) -> list[Detection]:
    """One image's detections in frame pixels, as the post-process op would give them.

    Args:
        encodings: ``(N, 4)`` box encodings (real values).
        scores: ``(N, 1 + num_classes)`` class scores (real values, background first).
        anchors: ``(N, 4)`` anchors.
        options: The op's options.
        conf: Scores at or below it are dropped (besides the op's own threshold).
        frame: ``(height, width)`` of the frame the boxes are scaled to.
        names: Class id → name.

    """
    boxes = decode_boxes(encodings, anchors, options.scales)
    classes_scores = scores[:, 1 : 1 + options.num_classes]
    threshold = max(conf, options.score_threshold)
    if options.regular_nms:
        rows, classes = np.nonzero(classes_scores > threshold)
        best = classes_scores[rows, classes]
        kept = class_aware_nms(boxes[rows], best, classes, iou=options.iou)
        kept = _per_class(kept, classes, options.detections_per_class)
    else:
        classes = classes_scores.argmax(axis=1)
        best = classes_scores[np.arange(len(classes)), classes]
        rows = np.flatnonzero(best > threshold)
        classes, best = classes[rows], best[rows]
        kept = nms(boxes[rows], best, iou=options.iou)
    kept = kept[: options.max_detections]
    height, width = frame
    scale = np.array([width, height, width, height], dtype=np.float32)
    pixels = np.clip(boxes[rows[kept]], 0.0, 1.0) * scale
    return [
        Detection(
            class_id=int(label),
            class_name=names.get(int(label), str(int(label))),
            score=float(score),
            box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
        )
        for label, score, b in zip(classes[kept], best[kept], pixels, strict=True)
        if b[2] > b[0] and b[3] > b[1]
    ]


def _per_class(
    kept: npt.NDArray[np.int64], classes: npt.NDArray[np.int64], limit: int
) -> npt.NDArray[np.int64]:
    """At most ``limit`` of each class, in the kept order."""
    counts: dict[int, int] = {}
    out = []
    for index in kept:
        label = int(classes[index])
        counts[label] = counts.get(label, 0) + 1
        if counts[label] <= limit:
            out.append(index)
    return np.array(out, dtype=np.int64)
