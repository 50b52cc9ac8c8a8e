"""A TFLite SSD with its ``TFLite_Detection_PostProcess`` op, taken apart for other runtimes.

Google's SSD exports (Coral's ``mobilenet_ssd_v2_coco_quant_postprocess.tflite``, Frigate's
default CPU model) end in a custom op that decodes the box encodings against constant anchors
and runs NMS. LiteRT has that op; OpenVINO does not and refuses the file. :func:`read_ssd`
reads, with the TFLite flatbuffer schema (``ai_edge_litert.schema_py_generated``), what the op
knows — its options, its anchors, how its two inputs are quantized — and builds the same
model without it, whose outputs are those two inputs; :mod:`lensflow.shared.detectors.ssd_decode`
then does in numpy what the op did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensflow.shared.errors import ModelError

POSTPROCESS_OP = b"TFLite_Detection_PostProcess"
_UINT8 = 3  # schema TensorType.UINT8
_FLOAT32 = 0  # schema TensorType.FLOAT32

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DecodeOptions:
    """The post-process op's options (its flexbuffer custom options).

    Attributes:
        scales: ``(y, x, h, w)`` box-encoding scales (10, 10, 5, 5 for Google's SSDs).
        max_detections: Most detections per image.
        iou: NMS IoU threshold.
        score_threshold: Scores at or below it are never kept.
        num_classes: Classes without the background.
        regular_nms: Per-class NMS (TFLite's "regular") rather than the fast class-agnostic one.
        detections_per_class: With regular NMS, the most kept per class.

    """

    scales: tuple[float, float, float, float]
    max_detections: int
    iou: float
    score_threshold: float
    num_classes: int
    regular_nms: bool = False
    detections_per_class: int = 100


@dataclass(frozen=True)
class Quantization:
    """How an output tensor is quantized: ``real = (q - zero_point) * scale``; None: float."""

    scale: float
    zero_point: int

    def dequantize(self, values: npt.NDArray[Any]) -> FloatArray:
        """The real values of quantized ones."""
        real: FloatArray = (values.astype(np.float32) - self.zero_point) * np.float32(self.scale)
        return real


@dataclass(frozen=True)
class SsdGraph:
    """What the post-process op of a TFLite SSD knows, and the model without it.

    Attributes:
        options: The op's options.
        anchors: ``(N, 4)`` anchors as ``y_center, x_center, height, width`` (normalised).
        boxes: Quantization of the box-encodings output (None when float).
        scores: Quantization of the class-scores output (None when float).
        input_size: ``(height, width)`` of the image input.
        cut: The flatbuffer of the model whose outputs are the op's two inputs.

    """

    options: DecodeOptions
    anchors: FloatArray
    boxes: Quantization | None
    scores: Quantization | None
    input_size: tuple[int, int]
    cut: bytes


def read_ssd(path: Path) -> SsdGraph:
    """Read a TFLite SSD with a ``TFLite_Detection_PostProcess`` op and cut the op off.

    Args:
        path: The ``.tflite`` file.

    Raises:
        ModelError: Not a TFLite flatbuffer, no such op, or an op this decoder cannot match.

    """
    schema, flatbuffers, flexbuffers = _schema()
    try:
        data = path.read_bytes()
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model: {err}") from err
    except Exception as err:  # the generated reader raises anything on garbage
        raise ModelError(f"{path}: expected a TFLite flatbuffer, got unreadable data") from err
    if len(model.subgraphs or []) != 1:
        raise ModelError(f"{path}: expected one subgraph, got {len(model.subgraphs or [])}")
    graph = model.subgraphs[0]
    index = _postprocess_index(model, graph, path)
    op = graph.operators[index]
    boxes_t, scores_t, anchors_t = (int(i) for i in op.inputs)
    options = _options(flexbuffers.Loads(bytes(op.customOptions)), path)
    anchors = _constant(model, graph.tensors[anchors_t], path)
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ModelError(f"{path}: expected anchors of shape (N, 4), got {anchors.shape}")
    _drop_operator(model, graph, index)
    graph.outputs = np.array([boxes_t, scores_t], dtype=np.int32)
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    shape = [int(v) for v in graph.tensors[int(graph.inputs[0])].shape]
    return SsdGraph(
        options=options,
        anchors=anchors,
        boxes=_quantization(graph.tensors[boxes_t]),
        scores=_quantization(graph.tensors[scores_t]),
        input_size=(shape[1], shape[2]),
        cut=bytes(builder.Output()),
    )


def has_postprocess_op(path: Path) -> bool:
    """Whether a .tflite holds the detection post-process op (cheap: a byte search)."""
    try:
        return POSTPROCESS_OP in path.read_bytes()
    except OSError:
        return False


def _schema() -> tuple[Any, Any, Any]:
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
        from flatbuffers import flexbuffers
    except ImportError as err:
        raise ModelError(
            f"reading a TFLite SSD needs ai-edge-litert ({err}): pip install 'lensflow[edge]'"
        ) from err
    return schema, flatbuffers, flexbuffers


def _postprocess_index(model: Any, graph: Any, path: Path) -> int:
    found = [
        i
        for i, op in enumerate(graph.operators)
        if model.operatorCodes[op.opcodeIndex].customCode == POSTPROCESS_OP
    ]
    if len(found) != 1:
        raise ModelError(
            f"{path}: expected one {POSTPROCESS_OP.decode()} op (a TFLite SSD), got {len(found)}"
        )
    index = found[0]
    if len(graph.operators[index].inputs) != 3:
        raise ModelError(f"{path}: expected the post-process op to take 3 inputs")
    return index


def _drop_operator(model: Any, graph: Any, index: int) -> None:
    """Remove an operator, and its operator code when nothing else uses it."""
    code = graph.operators[index].opcodeIndex
    del graph.operators[index]
    if any(op.opcodeIndex == code for op in graph.operators):
        return
    del model.operatorCodes[code]
    for op in graph.operators:
        if op.opcodeIndex > code:
            op.opcodeIndex -= 1


def _options(raw: Any, path: Path) -> DecodeOptions:
    try:
        return DecodeOptions(
            scales=(
                float(raw["y_scale"]),
                float(raw["x_scale"]),
                float(raw["h_scale"]),
                float(raw["w_scale"]),
            ),
            max_detections=int(raw["max_detections"]),
            iou=float(raw["nms_iou_threshold"]),
            score_threshold=float(raw["nms_score_threshold"]),
            num_classes=int(raw["num_classes"]),
            regular_nms=bool(raw.get("use_regular_nms", False)),
            detections_per_class=int(raw.get("detections_per_class", 100) or 100),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{path}: the post-process op's options lack {err}") from err


def _quantization(tensor: Any) -> Quantization | None:
    q = tensor.quantization
    if tensor.type == _FLOAT32 or q is None or q.scale is None or len(q.scale) == 0:
        return None
    return Quantization(scale=float(q.scale[0]), zero_point=int(q.zeroPoint[0]))


def _constant(model: Any, tensor: Any, path: Path) -> FloatArray:
    raw = model.buffers[tensor.buffer].data
    if raw is None:
        raise ModelError(f"{path}: expected constant anchors, got a computed tensor")
    shape = [int(v) for v in tensor.shape]
    if tensor.type == _UINT8:
        quant = _quantization(tensor)
        values = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(shape)
        return quant.dequantize(values) if quant else values.astype(np.float32)
    if tensor.type == _FLOAT32:
        return np.frombuffer(bytes(raw), dtype=np.float32).reshape(shape).copy()
    raise ModelError(f"{path}: anchors of tensor type {tensor.type} are not supported")
