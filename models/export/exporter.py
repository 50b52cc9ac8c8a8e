"""Turn a YOLO checkpoint into an edge/cloud artifact: export, quantize, check, describe.

The .pt -> ONNX / OpenVINO step is ultralytics' exporter; INT8 is done here (NNCF for
OpenVINO, ONNX Runtime static QDQ) with the detect head's decode kept in floating point; the
accuracy gate compares the artifact run by lensflow's own detector backend with the source
model run by ultralytics, on a calibration or hold-out folder.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lensflow.models.export import library_logs
from lensflow.models.export.accuracy import F1Report, detection_f1
from lensflow.models.export.calibration import image_files, load_images
from lensflow.models.export.card import (
    AccuracyCheck,
    ModelCard,
    sha256_file,
    tool_versions,
    write_card,
)
from lensflow.models.export.quantize import quantize_onnx, quantize_openvino
from lensflow.models.export.reference import reference_detections
from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.detectors.preprocess import preprocess
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

Format = Literal["onnx", "openvino"]
Precision = Literal["fp32", "fp16", "int8"]
MODEL_STEM = "model"


class AccuracyGateError(ModelError):
    """The exported model's detections differ too much from the source model's."""

    def __init__(self, report: F1Report, *, threshold: float, card: Path) -> None:
        self.report = report
        super().__init__(
            f"accuracy gate failed: detection F1 {report.f1:.3f} against the source model is "
            f"below {threshold:.2f} (precision {report.precision:.3f}, recall "
            f"{report.recall:.3f}, {report.images} images); card: {card}"
        )


@dataclass(frozen=True)
class ExportRequest:
    """What to export and how to check it."""

    weights: Path
    format: Format
    precision: Precision
    out_dir: Path
    calib_dir: Path | None = None
    holdout_dir: Path | None = None
    imgsz: int = 640
    min_f1: float = 0.90
    calib_limit: int = 300
    conf: float = 0.25
    iou: float = 0.7
    name: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class ExportResult:
    """Where the artifact is and how it did."""

    artifact: Path
    card: ModelCard
    card_path: Path


def default_out_dir(weights: Path, *, fmt: Format, precision: Precision) -> Path:
    """``<weights folder>/export/<fmt>-<precision>``.

    OpenVINO folders end in ``_openvino_model`` so ultralytics (the parity reference) loads them.
    """
    suffix = "_openvino_model" if fmt == "openvino" else ""
    return weights.parent / "export" / f"{fmt}-{precision}{suffix}"


def export_model(request: ExportRequest) -> ExportResult:
    """Export, quantize if asked, run the accuracy gate and write the model card.

    Raises:
        ModelError: bad weights, missing calibration images, an export failure.
        AccuracyGateError: the artifact is written, but its F1 is under ``min_f1``.
    """
    weights = _check_weights(request.weights)
    gate_dir = request.holdout_dir or request.calib_dir
    if gate_dir is None:
        raise ModelError("the accuracy gate needs images: pass --calib DIR or --holdout DIR")
    if request.precision == "int8" and request.calib_dir is None:
        raise ModelError("int8 needs calibration images: pass --calib DIR")
    gate_images = load_images(gate_dir, limit=request.calib_limit)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=request.out_dir, prefix=".export-") as scratch:
        artifact, quantization = _build(request, weights, Path(scratch))
    files = _artifact_files(artifact)
    detector = load_detector(
        artifact, backend=_backend(request.format), conf=request.conf, iou=request.iou
    )
    with detector:
        info = detector.info
        candidate = [detector.detect([image]).detections[0] for _, image in gate_images]
    reference = reference_detections(
        weights,
        [img for _, img in gate_images],
        imgsz=request.imgsz,
        conf=request.conf,
        iou=request.iou,
    )
    report = detection_f1(reference, candidate)
    passed = report.f1 >= request.min_f1
    card = ModelCard(
        name=request.name or weights.stem,
        format=request.format,
        precision=request.precision,
        input_size=info.input_size,
        class_names=info.names,
        artifact=artifact.name,
        artifact_sha256=files[artifact.name],
        files=files,
        source=str(weights),
        license=request.license,
        source_sha256=sha256_file(weights) if weights.is_file() else None,
        calibration=_calibration_note(request),
        quantization=quantization,
        accuracy=AccuracyCheck(
            **report.as_dict(), threshold=request.min_f1, passed=passed, folder=str(gate_dir)
        ),
        tools=tool_versions(),
    )
    card_path = write_card(card, artifact.parent)
    logger.info(
        "exported %s: F1 %.3f vs source (%s)", artifact, report.f1, "passed" if passed else "FAILED"
    )
    if not passed:
        raise AccuracyGateError(report, threshold=request.min_f1, card=card_path)
    return ExportResult(artifact, card, card_path)


def _check_weights(weights: Path) -> Path:
    """An existing .pt/.yaml file, or the bare name of one of ultralytics' model configs."""
    if weights.suffix not in {".pt", ".yaml", ".yml"}:
        raise ModelError(f"expected ultralytics weights (.pt) or a model .yaml, got {weights}")
    if weights.is_file():
        return weights.resolve()
    if weights.suffix != ".pt" and weights.parent == Path():
        return weights  # e.g. yolo11n.yaml: ultralytics builds it (random init) offline
    raise ModelError(f"weights file not found: {weights}")


def _backend(fmt: Format) -> Literal["onnxruntime", "openvino"]:
    return "onnxruntime" if fmt == "onnx" else "openvino"


def _build(
    request: ExportRequest, weights: Path, scratch: Path
) -> tuple[Path, dict[str, Any] | None]:
    """Export (and quantize) into ``scratch``, then move the result into ``out_dir``."""
    half = request.precision == "fp16"
    exported = ultralytics_export(
        weights, fmt=request.format, imgsz=request.imgsz, half=half, workdir=scratch
    )
    quantization = None
    if request.precision == "int8":
        assert request.calib_dir is not None
        tensors = _calibration_tensors(
            request.calib_dir, limit=request.calib_limit, imgsz=request.imgsz
        )
        if request.format == "openvino":
            target = scratch / "int8" / f"{MODEL_STEM}.xml"
            target.parent.mkdir()
            kept = quantize_openvino(exported, tensors, target)
            shutil.copy2(exported.parent / "metadata.yaml", target.parent / "metadata.yaml")
            method = "NNCF post-training (MIXED preset), detect head decode + DFL kept FP32"
        else:
            target = scratch / f"{MODEL_STEM}.int8.onnx"
            kept = quantize_onnx(exported, tensors, target)
            method = "ONNX Runtime static QDQ (U8 activations, S8 per-channel weights, MinMax)"
        exported = target
        quantization = {"method": method, "kept_float": kept, "calibration_images": len(tensors)}
    return _move_into(exported, request), quantization


def ultralytics_export(
    weights: Path, *, fmt: Format, imgsz: int, half: bool, workdir: Path
) -> Path:
    """Run ultralytics' exporter into ``workdir``; return the .onnx or the IR's .xml."""
    from lensflow.models.export.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.models import YOLO
    from ultralytics.nn.tasks import BaseModel

    library_logs.adopt()
    try:
        model = YOLO(str(weights), task="detect")
        if not isinstance(model.model, BaseModel):
            raise ModelError(f"expected a detection model in {weights}, got {type(model.model)}")
        model.model.pt_path = str(workdir / f"{MODEL_STEM}.pt")  # export writes beside this
        output = model.export(
            format=fmt,
            imgsz=imgsz,
            dynamic=False,
            simplify=True,
            device="cpu",
            quantize=16 if half else None,
            verbose=False,
        )
    except Exception as err:  # ultralytics raises many kinds; translate once, here
        raise ModelError(f"ultralytics could not export {weights} to {fmt}: {err}") from err
    path = Path(str(output))
    return path / f"{MODEL_STEM}.xml" if path.is_dir() else path


def _calibration_tensors(folder: Path, *, limit: int, imgsz: int) -> list[Any]:
    images: list[Image] = [image for _, image in load_images(folder, limit=limit)]
    return [preprocess([image], input_size=(imgsz, imgsz)).tensor for image in images]


def _move_into(exported: Path, request: ExportRequest) -> Path:
    """Move the artifact's files into ``out_dir`` under the stable name ``model.*``."""
    out = request.out_dir
    if exported.suffix == ".xml":
        for suffix in (".xml", ".bin"):
            shutil.move(exported.with_suffix(suffix), out / f"{MODEL_STEM}{suffix}")
        shutil.move(exported.parent / "metadata.yaml", out / "metadata.yaml")
        return out / f"{MODEL_STEM}.xml"
    target = out / f"{MODEL_STEM}.onnx"
    shutil.move(exported, target)
    return target


def _artifact_files(artifact: Path) -> dict[str, str]:
    names = [artifact.name]
    if artifact.suffix == ".xml":
        names += [artifact.with_suffix(".bin").name, "metadata.yaml"]
    return {name: sha256_file(artifact.parent / name) for name in names}


def _calibration_note(request: ExportRequest) -> dict[str, Any] | None:
    if request.calib_dir is None:
        return None
    count = len(image_files(request.calib_dir, limit=request.calib_limit))
    return {"folder": str(request.calib_dir), "images": count}
