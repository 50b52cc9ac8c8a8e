"""Export of the real YOLOv8s person model: FP32 and INT8, ONNX and OpenVINO, gated and carded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lensflow.models.export.card import read_card, sha256_file
from lensflow.models.export.exporter import AccuracyGateError, ExportRequest, export_model
from lensflow.shared.errors import ModelError

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("fmt", "precision", "artifact"),
    [
        ("onnx", "fp32", "model.onnx"),
        ("openvino", "fp32", "model.xml"),
        ("openvino", "int8", "model.xml"),  # NNCF, head decode kept in FP32
        ("onnx", "int8", "model.onnx"),  # ONNX Runtime static QDQ, head decode kept in FP32
    ],
)
def test_real_model_exports_pass_the_accuracy_gate(
    yolov8s_person_pt: Path,
    calib_dir: Path,
    tmp_path: Path,
    fmt: str,
    precision: str,
    artifact: str,
) -> None:
    result = export_model(
        ExportRequest(
            weights=yolov8s_person_pt,
            format=fmt,
            precision=precision,  # type: ignore[arg-type]
            out_dir=tmp_path / "out",
            calib_dir=calib_dir,
            name="yolov8s-person",
        )
    )
    assert result.artifact == tmp_path / "out" / artifact
    card = read_card(tmp_path / "out")
    assert card.class_names == {0: "Normal", 1: "Fall"}
    assert card.input_size == (640, 640)
    assert card.artifact_sha256 == sha256_file(result.artifact)
    assert card.source_sha256 == sha256_file(yolov8s_person_pt)
    assert card.accuracy is not None and card.accuracy.passed
    assert card.accuracy.f1 >= 0.90
    assert card.accuracy.reference_detections > 10  # the gate compared real detections
    if precision == "int8":
        assert card.quantization is not None and card.quantization["kept_float"] > 0
    # no scratch files left beside the artifact
    leftovers = {p.name for p in (tmp_path / "out").iterdir()}
    assert leftovers <= {"model.onnx", "model.xml", "model.bin", "metadata.yaml", "model_card.json"}


def test_gate_failure_exits_with_the_figure_and_keeps_the_card(
    yolov8s_person_pt: Path, calib_dir: Path, tmp_path: Path
) -> None:
    request = ExportRequest(
        weights=yolov8s_person_pt,
        format="onnx",
        precision="fp32",
        out_dir=tmp_path,
        calib_dir=calib_dir,
        min_f1=1.01,
    )
    with pytest.raises(AccuracyGateError, match=r"detection F1 \d\.\d{3} .* below 1\.01"):
        export_model(request)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["accuracy"]["passed"] is False


def test_random_init_yolo11n_exports_offline(calib_dir: Path, tmp_path: Path) -> None:
    # A bare config name: ultralytics builds it with random weights, no download.
    # Random weights detect nothing above 0.25: compare at a low threshold instead.
    request = ExportRequest(
        weights=Path("yolo11n.yaml"),
        format="onnx",
        precision="fp32",
        imgsz=320,
        out_dir=tmp_path / "out",
        calib_dir=calib_dir,
        conf=0.01,
        min_f1=0.0,
    )
    result = export_model(request)
    assert result.card.input_size == (320, 320)
    assert len(result.card.class_names) == 80


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("missing.pt", "weights file not found"),  # no such file
        ("weights.txt", "expected ultralytics weights (.pt)"),  # wrong kind of file
    ],
)
def test_bad_weights_are_named(
    tmp_path: Path, calib_dir: Path, weights: str, expected: str
) -> None:
    if weights.endswith(".txt"):
        (tmp_path / weights).write_text("not a model")
    with pytest.raises(ModelError, match=re.escape(expected)):
        export_model(
            ExportRequest(
                weights=tmp_path / weights,
                format="onnx",
                precision="fp32",
                out_dir=tmp_path / "o",
                calib_dir=calib_dir,
            )
        )


def test_corrupt_checkpoint_is_a_model_error(tmp_path: Path, calib_dir: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04 definitely not a torch checkpoint")
    with pytest.raises(ModelError, match="corrupt.pt"):
        export_model(
            ExportRequest(
                weights=corrupt,
                format="onnx",
                precision="fp32",
                out_dir=tmp_path / "o",
                calib_dir=calib_dir,
            )
        )


def test_int8_without_calibration_images_is_refused(
    yolov8s_person_pt: Path, tmp_path: Path, calib_dir: Path
) -> None:
    with pytest.raises(ModelError, match="int8 needs calibration images"):
        export_model(
            ExportRequest(
                weights=yolov8s_person_pt,
                format="openvino",
                precision="int8",
                out_dir=tmp_path,
                holdout_dir=calib_dir,
            )
        )
