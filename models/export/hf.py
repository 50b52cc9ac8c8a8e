"""Export a Hugging Face image-classification checkpoint to ONNX (and dynamic INT8), checked.

``lensflow models export-hf SRC --out DIR [--int8]``: SRC is a folder saved with
``save_pretrained`` (``config.json``, ``model.safetensors``, ``preprocessor_config.json``).
DIR receives what the ``car_make_vit`` plugin's ``runtime: onnxruntime`` reads:

* ``model.onnx`` — FP32, input ``pixel_values`` ``(N, 3, H, W)`` with a dynamic batch axis,
  output ``logits`` ``(N, classes)``;
* ``model.int8.onnx`` — with ``--int8``: ONNX Runtime dynamic quantization (INT8 weights,
  activations quantized on the fly; no calibration set);
* ``config.json`` (labels: ``id2label``) and ``preprocessor_config.json``, copied from SRC;
* ``export.json`` — what was checked, with the numbers, file hashes and tool versions.

Before anything is moved into DIR, the export is checked against transformers on real
images, preprocessed once (:class:`~lensflow.shared.classifiers.hf_checkpoint.ImageProcessorSpec`)
and
fed to both: the FP32 logits must agree within ``atol``; INT8, whose logits move more, must
pick the same top-1 class on at least ``min_int8_agreement`` of the images. A failed check
raises :class:`ExportCheckError` and leaves DIR without a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensflow.models.export.card import sha256_file
from lensflow.models.export.torch_onnx import export_dynamic_batch
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.hf_checkpoint import (
    CONFIG_FILE,
    PREPROCESSOR_FILE,
    WEIGHT_FILES,
    ImageProcessorSpec,
    read_labels,
)
from lensflow.shared.errors import ImageError, ModelError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
REPORT_FILE = "export.json"
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17  # LayerNormalization is a single op from 17; ONNX Runtime >= 1.14 runs it
DEFAULT_ATOL = 1e-3
DEFAULT_MIN_INT8_AGREEMENT = 0.9


class ExportCheckError(ModelError):
    """The exported model's outputs differ from the checkpoint's beyond the tolerance."""


@dataclass(frozen=True)
class HfExportReport:
    """Where the export went and how its check did (also written as ``export.json``)."""

    source: str
    out_dir: str
    files: dict[str, str]
    """File name -> sha256 of each file written."""
    labels: list[str]
    input_size: tuple[int, int]
    opset: int
    check_images: int
    max_abs_logit_diff: float
    atol: float
    int8_top1_agreement: float | None
    min_int8_agreement: float
    tools: dict[str, str]


def export_hf_classifier(
    source: Path,
    *,
    out_dir: Path,
    int8: bool = False,
    images: Sequence[Image] | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    min_int8_agreement: float = DEFAULT_MIN_INT8_AGREEMENT,
) -> HfExportReport:
    """Export ``source`` to ONNX in ``out_dir`` (plus INT8 if asked) and check it.

    Args:
        source: a checkpoint folder saved with ``save_pretrained``.
        out_dir: the artifact folder; created if missing; existing files of the same names
            are replaced only when the check passes.
        int8: also write ``model.int8.onnx`` (dynamic quantization).
        images: BGR images for the check; varied views of the sample photos when None.
        opset: ONNX opset of the export.
        atol: the largest absolute logit difference allowed between ONNX Runtime (FP32)
            and transformers.
        min_int8_agreement: the least fraction of check images on which INT8's top-1
            class must equal transformers'.

    Returns:
        The report, also written to ``out_dir/export.json``.

    Raises:
        ModelError: the source folder is incomplete or unreadable, or the export fails.
        ExportCheckError: the exported model disagrees with transformers.

    """
    labels, spec = _read_source(source)
    assert spec.input_size is not None  # ImageProcessorSpec.read rejects a variable size
    model = _load_checkpoint(source)
    check = list(images) if images is not None else default_check_images()
    if not check:
        raise ModelError("the export check needs at least one image")
    pixels = spec(check)
    expected = _torch_logits(model, pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-hf-") as scratch:
        folder = Path(scratch)
        _export_onnx(model, folder / ONNX_FILE, input_size=spec.input_size, opset=opset)
        diff = check_logits(expected, _onnx_logits(folder / ONNX_FILE, pixels), atol=atol)
        agreement = None
        if int8:
            quantize_int8(folder / ONNX_FILE, folder / INT8_FILE)
            got = _onnx_logits(folder / INT8_FILE, pixels)
            agreement = check_top1(expected, got, minimum=min_int8_agreement)
        for name in (CONFIG_FILE, PREPROCESSOR_FILE):
            shutil.copyfile(source / name, folder / name)
        written = [ONNX_FILE, *([INT8_FILE] if int8 else []), CONFIG_FILE, PREPROCESSOR_FILE]
        report = HfExportReport(
            source=str(source),
            out_dir=str(out_dir),
            files={name: sha256_file(folder / name) for name in written},
            labels=list(labels),
            input_size=spec.input_size,
            opset=opset,
            check_images=len(check),
            max_abs_logit_diff=diff,
            atol=atol,
            int8_top1_agreement=agreement,
            min_int8_agreement=min_int8_agreement,
            tools=_tool_versions(),
        )
        _publish(folder, out_dir, report)
    logger.info("exported %s to %s (max logit diff %.2e)", source, out_dir, diff)
    return report


def _publish(scratch: Path, out_dir: Path, report: HfExportReport) -> None:
    """Write the report, then move the checked files from ``scratch`` into ``out_dir``."""
    (scratch / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    for name in [*report.files, REPORT_FILE]:
        os.replace(scratch / name, out_dir / name)
    if INT8_FILE not in report.files:  # never leave an older INT8 beside a new FP32 model
        (out_dir / INT8_FILE).unlink(missing_ok=True)


def check_logits(expected: FloatArray, got: FloatArray, *, atol: float) -> float:
    """The largest absolute logit difference, after checking it is at most ``atol``.

    Raises:
        ExportCheckError: the shapes differ or the difference exceeds ``atol``.

    """
    if got.shape != expected.shape:
        raise ExportCheckError(
            f"the ONNX model returns logits of shape {got.shape}, transformers {expected.shape}"
        )
    worst = float(np.abs(got - expected).max())
    if not worst <= atol:  # also catches NaN
        raise ExportCheckError(
            f"the ONNX model's logits differ from transformers' by up to {worst:.3e} on "
            f"{len(got)} images; expected at most {atol:.1e}"
        )
    return worst


def check_top1(expected: FloatArray, got: FloatArray, *, minimum: float) -> float:
    """The fraction of rows whose argmax agrees, after checking it is at least ``minimum``.

    Raises:
        ExportCheckError: the agreement is below ``minimum``.

    """
    agreement = float(np.mean(expected.argmax(axis=1) == got.argmax(axis=1)))
    if agreement < minimum:
        raise ExportCheckError(
            f"the INT8 model picks the same class as transformers on {agreement:.0%} of "
            f"{len(got)} images; expected at least {minimum:.0%}"
        )
    return agreement


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic INT8 quantization of ``source`` into ``target`` (weights INT8, no calibration).

    Raises:
        ModelError: ONNX Runtime's quantizer fails.

    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".pre.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
    except Exception as err:  # the quantizer raises many kinds; translate once, here
        raise ModelError(f"cannot quantize {source} to INT8: {err}") from err
    finally:
        prepared.unlink(missing_ok=True)


def default_check_images() -> list[Image]:
    """Varied views (whole, centre, halves, mirrored) of the sample photos.

    Raises:
        ModelError: the sample photos are not installed (pass images instead).

    """
    from lensflow.shared.images import read_image, sample_image_paths

    try:
        photos = [read_image(path) for path in sample_image_paths()]
    except ImageError as err:
        raise ModelError(f"no check images: pass a folder of images ({err})") from err
    views: list[Image] = []
    for photo in photos:
        h, w = photo.shape[:2]
        views += [photo, photo[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]]
        views += [photo[:, : w // 2], photo[h // 2 :, w // 2 :], photo[:, ::-1]]
    return [np.ascontiguousarray(view) for view in views]


def _read_source(source: Path) -> tuple[tuple[str, ...], ImageProcessorSpec]:
    """Labels and preprocessing of a checkpoint folder, after checking its files are there."""
    if not source.is_dir():
        raise ModelError(
            f"{source}: expected a Hugging Face checkpoint folder (save_pretrained), "
            "but it is not a folder"
        )
    if not any((source / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(f"{source}: no weights; expected one of {', '.join(WEIGHT_FILES)}")
    return read_labels(source), ImageProcessorSpec.read(source)


def _load_checkpoint(source: Path) -> Any:
    """The checkpoint as a transformers model in eval mode, on CPU."""
    from lensflow.shared.classifiers.hf_runtime import import_transformers

    _, auto_model = import_transformers()
    try:
        return auto_model.from_pretrained(str(source)).eval()
    except Exception as err:  # transformers, safetensors and torch raise many kinds
        raise ModelError(f"{source}: transformers cannot load the checkpoint: {err}") from err


def _torch_logits(model: Any, pixels: FloatArray) -> FloatArray:
    """The checkpoint's logits (transformers, torch) of a preprocessed batch."""
    import torch

    with torch.inference_mode():
        logits: FloatArray = model(pixel_values=torch.from_numpy(pixels)).logits.numpy()
    return logits


def _export_onnx(model: Any, target: Path, *, input_size: tuple[int, int], opset: int) -> None:
    """``torch.onnx.export`` with a dynamic batch axis (the TorchScript exporter)."""
    import torch

    example = torch.rand(2, 3, *input_size)
    export_dynamic_batch(
        model,
        example,
        target,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        opset=opset,
        what="the checkpoint",
    )


def _onnx_logits(path: Path, pixels: FloatArray) -> FloatArray:
    """ONNX Runtime's (CPU) logits of the whole batch in one call (proves the dynamic axis)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits: FloatArray = session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0]
    except Exception as err:  # onnxruntime raises its own untyped exceptions
        raise ExportCheckError(f"ONNX Runtime cannot run the exported {path.name}: {err}") from err
    return logits


def _tool_versions() -> dict[str, str]:
    """Versions of the packages that shaped the artifact."""
    found = {}
    for package in ("lensflow", "torch", "transformers", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
