"""Backends on tiny synthetic ONNX graphs and on real SSD weights: results, bad inputs, errors."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from lensflow.shared.detectors import load_detector
from lensflow.shared.detectors.metadata import parse_yolo_metadata
from lensflow.shared.detectors.onnxruntime import OnnxRuntimeDetector, select_providers
from lensflow.shared.detectors.openvino import OpenVinoDetector
from lensflow.shared.detectors.ssd_openvino import SsdOpenVinoDetector
from lensflow.shared.errors import DetectorError, ImageError, ModelError
from lensflow.shared.images import read_image

YOLO_BACKENDS = [OnnxRuntimeDetector, OpenVinoDetector]  # both read .onnx files

# Raw (1, 6, 3) output in 64x64 input pixels: one person, one car, one low score.
FAKE_OUTPUT = np.array(
    [
        [32, 16, 50],  # cx
        [32, 16, 50],  # cy
        [16, 8, 4],  # w
        [32, 8, 4],  # h
        [0.9, 0.0, 0.1],  # person
        [0.0, 0.7, 0.1],  # car
    ],
    np.float32,
)[None]


@pytest.fixture
def frames() -> list[np.ndarray]:
    """Three frames of different shapes, so each has its own letterbox."""
    return [
        np.zeros((64, 64, 3), np.uint8),
        np.zeros((32, 64, 3), np.uint8),
        np.zeros((128, 64, 3), np.uint8),
    ]


def boxes_of(batch):
    return [
        [(d.class_name, round(d.score, 2), [round(v) for v in d.box]) for d in f] for f in batch
    ]


EXPECTED = [
    [("person", 0.9, [24, 16, 40, 48]), ("car", 0.7, [12, 12, 20, 20])],
    # 32x64 frame: scale 1, 16 px of padding above
    [("person", 0.9, [24, 0, 40, 32]), ("car", 0.7, [12, 0, 20, 4])],
    # 128x64 frame: scale 0.5, 16 px of padding on the left
    [("person", 0.9, [16, 32, 48, 96]), ("car", 0.7, [0, 24, 8, 40])],
]


@pytest.mark.parametrize("backend", YOLO_BACKENDS)
@pytest.mark.parametrize(
    "batch",
    [
        1,  # ultralytics' default export: frames go one by one, still one DetectionBatch
        "N",  # dynamic batch: all frames in one run
    ],
)
def test_backend_decodes_every_frame_with_its_letterbox(backend, batch, make_onnx, frames):
    path = make_onnx("fake.onnx", input_shape=(batch, 3, 64, 64), output=FAKE_OUTPUT)
    with backend(path) as detector:
        result = detector.detect(frames)
    assert boxes_of(result.detections) == EXPECTED
    assert detector.info.names == {0: "person", 1: "car"}
    assert detector.info.input_size == (64, 64)
    assert result.times.infer_ms > 0
    assert result.times.total_ms >= result.times.pre_ms + result.times.post_ms


@pytest.mark.parametrize("backend", YOLO_BACKENDS)
def test_empty_batch_gives_empty_result(backend, make_onnx):
    detector = backend(make_onnx("fake.onnx", output=FAKE_OUTPUT))
    assert detector.detect([]).detections == []


def test_openvino_stream_yields_in_input_order_what_detect_gives(make_onnx, frames):
    detector = OpenVinoDetector(make_onnx("fake.onnx", output=FAKE_OUTPUT))
    streamed = list(detector.detect_stream(iter(frames * 3), requests=3))
    assert boxes_of(streamed) == EXPECTED * 3


@pytest.mark.parametrize(
    ("load", "name"),
    [
        (OnnxRuntimeDetector, "missing.onnx"),
        (OpenVinoDetector, "missing.xml"),
        (SsdOpenVinoDetector, "missing.pb"),
        (load_detector, "missing.onnx"),
    ],
)
def test_missing_model_file_is_a_model_error_naming_it(load, name, tmp_path):
    with pytest.raises(ModelError, match=rf"{name}: model (file )?not found; expected"):
        load(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("corrupt.onnx", "expected an ONNX model; onnxruntime cannot load it"),
        ("corrupt.xml", r"expected an OpenVINO-readable model \(.xml/.onnx/.pb\)"),
        ("corrupt.pb", r"expected an OpenVINO-readable model \(.xml/.onnx/.pb\)"),
    ],
)
def test_corrupt_model_file_is_a_model_error(name, expected, tmp_path):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    path.with_suffix(".bin").write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match=rf"{name}: {expected}"):
        load_detector(path)


def test_ir_without_its_bin_is_a_model_error(tmp_path):
    (tmp_path / "model.xml").write_text("<net/>")
    with pytest.raises(ModelError, match=r"model\.xml: expected its weights beside it"):
        OpenVinoDetector(tmp_path)


def test_folder_without_exactly_one_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=r"expected a folder holding one \.xml/\.onnx model"):
        OpenVinoDetector(tmp_path)


@pytest.mark.parametrize("backend", YOLO_BACKENDS)
def test_model_that_is_not_a_yolo_head_is_a_model_error(backend, make_onnx):
    path = make_onnx("classifier.onnx", output=np.zeros((1, 10), np.float32))
    with pytest.raises(ModelError) as caught:
        backend(path)
    message = str(caught.value)
    assert str(path) in message
    assert "(N, 4+nc, anchors) = (N, 6, anchors) with nc=2 from the metadata" in message
    assert "got (1, 10)" in message


@pytest.mark.parametrize("backend", YOLO_BACKENDS)
def test_model_without_metadata_is_a_model_error_saying_what_is_expected(backend, make_onnx):
    path = make_onnx("bare.onnx", output=FAKE_OUTPUT, metadata={"author": "someone"})
    with pytest.raises(ModelError, match=r"expected ultralytics export metadata: 'names'"):
        backend(path)


def test_metadata_imgsz_that_contradicts_the_input_is_a_model_error(make_onnx):
    meta = {"names": "{0: 'a', 1: 'b'}", "imgsz": "[640, 640]"}
    path = make_onnx("liar.onnx", output=FAKE_OUTPUT, metadata=meta)
    with pytest.raises(ModelError, match=r"imgsz \[640, 640\] disagrees with the input shape"):
        OnnxRuntimeDetector(path)


@pytest.mark.parametrize(
    ("names", "error"),
    [
        ("__import__('os').system('exit 1')", "must be a Python literal"),  # never evaluated
        ("{}", "must be a non-empty dict"),
        ("{'a': 'person'}", "keys must be ints"),
    ],
)
def test_metadata_names_are_parsed_as_literals_only(names, error):
    with pytest.raises(ModelError, match=error):
        parse_yolo_metadata({"names": names}, source="m.onnx")


def test_metadata_from_onnx_strings_and_from_yaml_values_agree():
    onnx_props = {"names": "{0: 'Normal', 1: 'Fall'}", "imgsz": "[640, 640]", "stride": "32"}
    yaml_values = {"names": {0: "Normal", 1: "Fall"}, "imgsz": [640, 640], "stride": 32}
    assert parse_yolo_metadata(onnx_props, source="a") == parse_yolo_metadata(
        yaml_values, source="b"
    )


def test_undecodable_image_file_is_an_image_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageError, match=r"broken\.jpg: expected a JPEG, PNG, WebP or BMP image"):
        read_image(path)


@pytest.mark.parametrize("backend", YOLO_BACKENDS)
def test_frame_that_is_not_bgr_uint8_is_an_image_error(backend, make_onnx):
    detector = backend(make_onnx("fake.onnx", output=FAKE_OUTPUT))
    with pytest.raises(ImageError, match=r"expected a BGR uint8 image of shape \(H, W, 3\)"):
        detector.detect([np.zeros((64, 64), np.float32)])


CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("device", "available", "providers"),
    [
        ("CPU", [CPU], [CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),  # hints are case-insensitive
        # TensorRT falls back to CUDA then CPU for the ops it cannot take
        ("TensorRT", [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        # a CPU hint never drags a GPU provider in
        ("CPU", [TRT, CUDA, CPU], [CPU]),
    ],
)
def test_device_hint_selects_execution_providers(device, available, providers):
    assert select_providers(device, available) == providers


def test_unavailable_device_is_a_detector_error_listing_what_is_available():
    with pytest.raises(
        DetectorError,
        match=r"needs onnxruntime's CUDAExecutionProvider.*\['CPUExecutionProvider'\]",
    ):
        select_providers("CUDA", ["CPUExecutionProvider"])
    with pytest.raises(
        DetectorError, match=r"device must be one of CPU, CUDA, TensorRT; got 'TPU'"
    ):
        select_providers("TPU", ["CPUExecutionProvider"])


def test_unknown_openvino_device_is_a_detector_error(make_onnx):
    with pytest.raises(DetectorError, match=r"cannot compile for device 'NOPE'.*available devices"):
        OpenVinoDetector(make_onnx("fake.onnx", output=FAKE_OUTPUT), device="NOPE")


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("auto", OnnxRuntimeDetector),  # .onnx defaults to ONNX Runtime
        ("openvino", OpenVinoDetector),  # OpenVINO reads .onnx too
    ],
)
def test_factory_picks_the_backend(backend, expected, make_onnx):
    path = make_onnx("fake.onnx", output=FAKE_OUTPUT)
    assert type(load_detector(path, backend=backend)) is expected


def test_factory_refuses_a_family_the_backend_cannot_run(make_onnx):
    path = make_onnx("fake.onnx", output=FAKE_OUTPUT)
    with pytest.raises(ModelError, match=r"no ssd detector for backend 'onnxruntime'"):
        load_detector(path, backend="onnxruntime", family="ssd")


@pytest.mark.parametrize(
    ("runtime", "module", "extra"),
    [
        ("onnxruntime", "lensflow.shared.detectors.onnxruntime", "lensflow[cpu]"),
        ("openvino", "lensflow.shared.detectors.openvino", "lensflow[edge]"),
    ],
)
def test_missing_runtime_is_a_model_error_naming_the_extra(
    runtime, module, extra, monkeypatch, make_onnx
):
    # given the runtime cannot be imported (None in sys.modules makes `import` fail)
    monkeypatch.setitem(sys.modules, runtime, None)
    monkeypatch.delitem(sys.modules, module)
    expected = rf"needs the '{runtime}' package.*pip install '{re.escape(extra)}'"
    with pytest.raises(ModelError, match=expected):
        load_detector(make_onnx("fake.onnx", output=FAKE_OUTPUT), backend=runtime)


@pytest.mark.integration
def test_ssd_finds_people_on_the_sample_photos(ssdlite_person_pb, sample_images):
    detector = load_detector(ssdlite_person_pb, conf=0.5)
    assert detector.info.family == "ssd"
    result = detector.detect([sample_images["bus"], sample_images["zidane"]])
    bus, zidane = result.detections
    # This model finds the two people standing in front of the bus (scores ~1.0); the third,
    # cut by the right edge, scores 0.07. The torso in zidane.jpg's foreground counts twice.
    assert len(bus) >= 2
    assert len(zidane) >= 1
    assert {d.class_name for d in bus + zidane} == {"person"}
    images = (sample_images["bus"], sample_images["zidane"])
    for frame, image in zip(result.detections, images, strict=True):
        height, width = image.shape[:2]
        assert all(
            0 <= d.box[0] < d.box[2] <= width and 0 <= d.box[1] < d.box[3] <= height for d in frame
        )


@pytest.mark.integration
def test_ssd_batch_gives_what_single_frames_give(ssdlite_person_pb, sample_images):
    detector = SsdOpenVinoDetector(ssdlite_person_pb)
    images = [sample_images["bus"], sample_images["zidane"]]
    batched = detector.detect(images).detections
    singles = [detector.detect([image]).detections[0] for image in images]
    assert boxes_of(batched) == boxes_of(singles)


def test_openvino_frames_in_flight_give_what_detect_gives(person_onnx, sample_images):
    # given the real person model on OpenVINO's async queue (its inputs shared, not copied)
    import threading

    detector = OpenVinoDetector(person_onnx, performance_hint="THROUGHPUT", requests=3)
    images = [sample_images["bus"], sample_images["zidane"]] * 3
    expected = [detector.detect([image]).detections[0] for image in images]

    # when every frame is submitted before any is answered
    answers: dict[int, object] = {}
    done = threading.Semaphore(0)

    def finish(index: int):
        def call(result: object) -> None:
            answers[index] = result
            done.release()

        return call

    for index, image in enumerate(images):
        detector.submit([image.copy()], done=finish(index))  # the caller drops its copy
    for _ in images:
        assert done.acquire(timeout=60)

    # then each frame's detections are those of its own frame, as detect gives them
    assert all(len(found) >= 3 for found in expected[::2])  # the people in front of the bus
    for index, want in enumerate(expected):
        assert answers[index].detections[0] == want
    detector.close()
