"""Coral's COCO SSD (Frigate's default CPU model) on LiteRT whole, and on OpenVINO without its
post-process op, decoded by lensflow: the same objects in real photos.

The reference is LiteRT running the original file with its own TFLite_Detection_PostProcess
(what Frigate does). Both runtimes execute the same uint8 graph with their own int8 kernels, so
raw scores of single anchors differ by a few quantization steps (1/256 each); LiteRT's own two
kernel sets (XNNPACK and the built-in ones) differ by as much, which the last test measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensflow.models.export.accuracy import detection_f1
from lensflow.shared.detectors.base import Detection
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.detectors.litert import LiteRtDetector
from lensflow.shared.detectors.ssd_tflite_openvino import SsdTfliteOpenVinoDetector
from lensflow.shared.detectors.tflite_ssd import read_ssd
from lensflow.shared.errors import ModelError
from lensflow.shared.images import read_image

pytestmark = pytest.mark.integration

CONF = 0.3
BORDER = 0.05  # a detection this close to CONF may be on one side only
STEP = 1 / 256  # one quantization step of the model's scores


@pytest.fixture(scope="module")
def litert(ssd_coco_tflite: Path) -> LiteRtDetector:
    detector = load_detector(ssd_coco_tflite, conf=CONF)
    assert isinstance(detector, LiteRtDetector)
    return detector


@pytest.fixture(scope="module")
def openvino(ssd_coco_tflite: Path) -> SsdTfliteOpenVinoDetector:
    detector = load_detector(ssd_coco_tflite, backend="openvino", conf=CONF)
    assert isinstance(detector, SsdTfliteOpenVinoDetector)
    return detector


def iou(a: Detection, b: Detection) -> float:
    x1, y1 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x2, y2 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a.area + b.area - inter)


def pairs(
    ref: list[Detection], got: list[Detection]
) -> tuple[list[tuple[Detection, Detection]], list[Detection]]:
    """Greedy matching by class and best IoU; returns pairs and the unmatched of both sides."""
    free = list(got)
    matched, alone = [], []
    for r in ref:
        best = max(
            (g for g in free if g.class_id == r.class_id), key=lambda g: iou(r, g), default=None
        )
        if best is not None and iou(r, best) >= 0.5:
            matched.append((r, best))
            free.remove(best)
        else:
            alone.append(r)
    return matched, alone + free


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        # darknet's dog.jpg: a dog, a bicycle and a pickup truck (COCO calls it a car)
        ("dog", {"dog", "bicycle", "car"}),
        # darknet's person.jpg: a person, with a horse and a dog
        ("person", {"person", "horse"}),
        # the ultralytics wheel's bus.jpg
        ("bus", {"bus", "person"}),
    ],
)
def test_both_runtimes_find_the_objects_of_real_photos(
    litert: LiteRtDetector,
    openvino: SsdTfliteOpenVinoDetector,
    coco_photos: dict[str, Path],
    photo: str,
    expected: set[str],
) -> None:
    image = read_image(coco_photos[photo])
    for detector in (litert, openvino):
        found = {d.class_name for d in detector.detect([image]).detections[0]}
        assert expected <= found, (type(detector).__name__, found)


def test_openvino_with_our_decode_matches_litert_with_its_op(
    litert: LiteRtDetector, openvino: SsdTfliteOpenVinoDetector, coco_photos: dict[str, Path]
) -> None:
    images = [read_image(path) for path in coco_photos.values()]
    reference = [litert.detect([image]).detections[0] for image in images]
    candidate = [openvino.detect([image]).detections[0] for image in images]
    # detection F1 against LiteRT's own post-process, over every photo
    assert detection_f1(reference, candidate).f1 >= 0.98
    deltas = []
    for ref, got in zip(reference, candidate, strict=True):
        matched, alone = pairs(ref, got)
        # the same count: only detections at the threshold's border may be on one side only
        assert all(d.score < CONF + BORDER for d in alone), alone
        for r, g in matched:
            # the same box: IoU >= 0.9, or within 2 px for boxes too small for IoU to say so
            corner = max(abs(a - b) for a, b in zip(r.box, g.box, strict=True))
            assert iou(r, g) >= 0.9 or corner <= 2.0, (r, g)
            deltas.append(abs(r.score - g.score))
    # scores: most equal within 0.02; single anchors differ by int8 kernel rounding (see top)
    assert float(np.mean(np.array(deltas) <= 0.02)) >= 0.85, deltas
    assert max(deltas) <= 20 * STEP, deltas


def test_the_cut_model_keeps_the_ops_decoding_and_anchors(
    ssd_coco_tflite: Path, tmp_path: Path
) -> None:
    graph = read_ssd(ssd_coco_tflite)

    assert graph.options.scales == (10.0, 10.0, 5.0, 5.0)
    assert graph.options.num_classes == 90 and not graph.options.regular_nms
    assert graph.anchors.shape == (1917, 4)
    assert graph.input_size == (300, 300)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(graph.cut)
    with pytest.raises(ModelError, match="expected one TFLite_Detection_PostProcess op"):
        read_ssd(cut)  # the op is gone, and only it


def test_class_names_come_from_the_labels_file(litert: LiteRtDetector) -> None:
    names = litert.info.names

    assert (names[0], names[2], names[5], names[7]) == ("person", "car", "bus", "truck")
    assert 11 not in names  # COCO's gaps are kept: ids are the model's


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "expected a TFLite flatbuffer|TFLite SSD"),
        (b"not a model at all" * 10, "expected a TFLite flatbuffer|TFLite SSD"),
    ],
)
def test_a_broken_file_is_a_model_error(tmp_path: Path, content: bytes, error: str) -> None:
    broken = tmp_path / "m.tflite"
    broken.write_bytes(content)
    (tmp_path / "labels.txt").write_text("person\n")

    for backend in ("litert", "openvino"):
        with pytest.raises(ModelError, match=error):
            load_detector(broken, backend=backend)  # type: ignore[arg-type]


def test_a_model_without_labels_says_what_it_expected(
    ssd_coco_tflite: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "m.tflite"
    alone.write_bytes(ssd_coco_tflite.read_bytes())

    with pytest.raises(ModelError, match=r"expected one labels file \(\*labels\*.txt\)"):
        load_detector(alone)
