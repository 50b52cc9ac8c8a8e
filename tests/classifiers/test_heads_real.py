"""A head on real embeddings of real crops beats the gate; on shuffled labels it is refused.

The crops are what the edge's COCO detector (SSD MobileNetV2, LiteRT) finds in the sample
photos, each cut eight ways (shifted, scaled, flipped, darkened) as a camera sees an object
from frame to frame; the vectors are the real EfficientNet-Lite0 embeddings the ``embeddings``
node computes. The labels stand for an operator sorting crops into person / animal / thing
(from the detector's class). Crops of one object are near-duplicates spread over train and
held-out by the crop-id split, so the held-out accuracy here is optimistic; the shuffled
labels show the gate is not.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lensflow.cloud.heads.training import (
    LabelledVectors,
    TrainingOptions,
    evaluate,
    fit,
    gate,
    majority_class,
    split,
)
from lensflow.shared.classifiers.embeddings import Embeddings, EmbeddingsParams
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.images import read_image

pytestmark = pytest.mark.integration

KIND = {"person": "person"} | dict.fromkeys(
    ("horse", "dog", "elephant", "zebra", "giraffe", "bird", "cat", "sheep", "cow"), "animal"
)
JITTERS = 8


def variants(
    image: np.ndarray, box: tuple[float, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Eight crops of one detection: shifted and scaled boxes, a flip, a darker one."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    crops = []
    for i in range(JITTERS):
        w, h = x2 - x1, y2 - y1
        dx, dy = rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h
        scale = rng.uniform(0.9, 1.2)
        cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
        a, b = int(max(0, cx - scale * w / 2)), int(max(0, cy - scale * h / 2))
        c, d = int(min(width, cx + scale * w / 2)), int(min(height, cy + scale * h / 2))
        crop = image[b:d, a:c]
        if i % 4 == 1:
            crop = cv2.flip(crop, 1)
        if i % 4 == 3:
            crop = (crop * 0.6).astype(np.uint8)
        crops.append(np.ascontiguousarray(crop))
    return crops


@pytest.fixture(scope="module")
def real_vectors(
    ssd_coco_tflite: Path, coco_photos: dict[str, Path], effnet_features_onnx: Path
) -> LabelledVectors:
    detector = load_detector(ssd_coco_tflite, conf=0.3)
    embeddings = Embeddings(EmbeddingsParams(model=str(effnet_features_onnx)))
    rng = np.random.default_rng(7)
    crops, labels, ids = [], [], []
    for stem, path in sorted(coco_photos.items()):
        image = read_image(path)
        for n, det in enumerate(detector.detect([image]).detections[0]):
            if min(det.box[2] - det.box[0], det.box[3] - det.box[1]) < 16:
                continue
            for j, crop in enumerate(variants(image, det.box, rng)):
                crops.append(crop)
                labels.append(KIND.get(det.class_name, "thing"))
                ids.append(f"{stem}-{n}-{j}")
    vectors = embeddings.embed(crops)
    return LabelledVectors(
        tuple(ids), vectors.astype(np.float32), tuple(labels), embeddings.model_id
    )


def gated(data: LabelledVectors) -> tuple[object, object]:
    train, heldout = split(data)
    classes = ["person", "animal", "thing"]
    head = fit(train, classes=classes, options=TrainingOptions())
    majority = majority_class(train)
    candidate = evaluate(head.predict(heldout.vectors), heldout.labels, classes)
    reference = evaluate([majority] * len(heldout.labels), heldout.labels, classes)
    return head, gate(candidate, reference, baseline=f"majority class {majority!r}", first=True)


def test_a_head_on_real_embeddings_beats_the_majority_class(real_vectors: LabelledVectors) -> None:
    assert len(real_vectors.labels) >= 150

    _, verdict = gated(real_vectors)

    assert verdict.passed, verdict.reasons  # type: ignore[attr-defined]
    assert verdict.candidate.accuracy > verdict.reference.accuracy + 0.2  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_gate_refuses_a_head_trained_on_shuffled_real_labels(
    real_vectors: LabelledVectors, seed: int
) -> None:
    order = np.random.default_rng(seed).permutation(len(real_vectors.labels))
    shuffled = LabelledVectors(
        real_vectors.crop_ids,
        real_vectors.vectors,
        tuple(real_vectors.labels[i] for i in order),
        real_vectors.embedding_model,
    )

    _, verdict = gated(shuffled)

    assert not verdict.passed  # type: ignore[attr-defined]
