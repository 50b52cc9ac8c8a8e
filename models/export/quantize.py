"""INT8 post-training quantization with the YOLO head kept in floating point.

One INT8 scale across the head's final concat (box pixels 0..640 beside class scores 0..1)
rounds every score to zero, so both paths keep the head's decode out of quantization:

* OpenVINO through NNCF: the last Sigmoid and every op of the detect head module
  (``__module.model.N/...``) and its DFL are in the ignored scope — what ultralytics' own INT8
  export does; the head's convolutions are still quantized.
* ONNX Runtime static QDQ: every node of the head module (``/model.N/``) except its
  convolution branches (``/model.N/cv*``) is excluded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lensflow.models.export import library_logs
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

Tensor = npt.NDArray[np.float32]


def quantize_openvino(source_xml: Path, calibration: Sequence[Tensor], target_xml: Path) -> int:
    """Quantize an OpenVINO IR to INT8 with NNCF, keeping the detect head's decode in FP32.

    Args:
        source_xml: the FP32 IR.
        calibration: pre-processed inputs, each (1, 3, H, W) float32.
        target_xml: where to save the INT8 IR (``.bin`` beside it).

    Returns:
        The number of ops kept out of quantization.
    """
    import nncf
    import openvino as ov

    library_logs.adopt()
    model = ov.Core().read_model(str(source_xml))
    ignored = _openvino_head_ops(model)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(names=ignored),
    )
    ov.save_model(quantized, str(target_xml), compress_to_fp16=False)
    return len(ignored)


def _openvino_head_ops(model: object) -> list[str]:
    ops = model.get_ordered_ops()  # type: ignore[attr-defined]
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        raise ModelError("expected a YOLO detect head (a final Sigmoid) in the IR, found none")
    head = sigmoids[-1].split("/", 1)[0]  # e.g. '__module.model.22'
    return [
        op.get_friendly_name()
        for op in ops
        if op.get_type_name() == "Sigmoid"
        or op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))
    ]


def quantize_onnx(source: Path, calibration: Sequence[Tensor], target: Path) -> int:
    """Statically quantize an ONNX model to INT8 (QDQ), keeping the head's decode in FP32.

    Args:
        source: the FP32 ONNX model.
        calibration: pre-processed inputs, each (1, 3, H, W) float32.
        target: where to write the INT8 model.

    Returns:
        The number of nodes kept out of quantization.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared))
    input_name = graph.graph.input[0].name
    excluded = _onnx_head_nodes(graph)

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = iter([{input_name: tensor} for tensor in calibration])

        def get_next(self) -> dict[str, Tensor] | None:
            return next(self._items, None)

    quantize_static(
        str(prepared),
        str(target),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=excluded,
    )
    prepared.unlink(missing_ok=True)
    _copy_metadata(source, target)
    return len(excluded)


def _onnx_head_nodes(model: object) -> list[str]:
    names = [node.name for node in model.graph.node]  # type: ignore[attr-defined]
    heads = sorted(
        {n.split("/")[1] for n in names if n.startswith("/model.")},
        key=lambda part: int(part.split(".")[1]) if part.split(".")[1].isdigit() else -1,
    )
    if not heads:
        raise ModelError("expected ultralytics node names (/model.N/...) in the ONNX graph")
    head = f"/{heads[-1]}/"
    return [n for n in names if n.startswith(head) and not n.startswith(f"{head}cv")]


def _copy_metadata(source: Path, target: Path) -> None:
    """Carry the class names and input size (metadata_props) over to the quantized model."""
    import onnx

    src, dst = onnx.load(str(source)), onnx.load(str(target))
    present = {prop.key for prop in dst.metadata_props}
    for prop in src.metadata_props:
        if prop.key not in present:
            dst.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(dst, str(target))
