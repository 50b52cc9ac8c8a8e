"""YOLO detect models exported to ONNX, run by ONNX Runtime (``pip install 'lensflow[cpu]'``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import DetectionBatch, DetectorBackend, ModelInfo
from lensflow.shared.detectors.metadata import parse_yolo_metadata, resolve_input_size
from lensflow.shared.detectors.postprocess import DecodeSettings, detect_yolo, validate_output_shape
from lensflow.shared.detectors.preprocess import FloatArray
from lensflow.shared.errors import DetectorError, ModelError

logger = logging.getLogger(__name__)

# Device hint -> execution providers, preferred first; the first one must be available.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def select_providers(device: str, available: Sequence[str]) -> list[str]:
    """Execution providers for a device hint, in priority order.

    Args:
        device: "CPU", "CUDA" or "TensorRT" (any case).
        available: what this onnxruntime build offers (``ort.get_available_providers()``).

    Returns:
        The hint's providers that are available, the requested one first.

    Raises:
        DetectorError: unknown hint, or its provider is not in this onnxruntime build.
    """
    wanted = PROVIDERS.get(device.lower())
    if wanted is None:
        raise DetectorError(f"device must be one of CPU, CUDA, TensorRT; got {device!r}")
    if wanted[0] not in available:
        raise DetectorError(
            f"device {device!r} needs onnxruntime's {wanted[0]}, but this onnxruntime offers "
            f"only {list(available)} (GPU providers come with 'lensflow[gpu]', i.e. "
            "onnxruntime-gpu, installed instead of onnxruntime)"
        )
    return [provider for provider in wanted if provider in available]


class OnnxRuntimeDetector(DetectorBackend):
    """An ultralytics YOLO detect model (.onnx) in ONNX Runtime.

    Class names and input size come from the file's metadata. A model with a fixed batch
    size (ultralytics' default export: 1) gets frames in chunks of that size; one call to
    :meth:`detect` still returns one :class:`DetectionBatch`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "CPU",
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int | None = None,
        parallel: int = 1,
    ) -> None:
        """Load the model.

        Args:
            path: the .onnx file.
            device: "CPU", "CUDA" or "TensorRT".
            conf: minimum class score kept.
            iou: NMS IoU threshold (ultralytics' default 0.7).
            max_det: most detections per frame.
            threads: intra-op threads; onnxruntime's default when None.
            parallel: threads that may call :meth:`detect` at once (a session is thread-safe:
                their runs overlap pre- and post-processing with inference).

        Raises:
            ModelError: the file is missing, not an ONNX model, or not a YOLO detect export.
            DetectorError: the device is not available in this onnxruntime.
        """
        self.path = Path(path)
        self.settings = DecodeSettings(conf=conf, iou=iou, max_det=max_det)
        self._parallel = max(1, parallel)
        providers = select_providers(device, ort.get_available_providers())
        session = _open_session(self.path, providers=providers, threads=threads)
        self._session: ort.InferenceSession | None = session
        used = session.get_providers()
        if providers[0] not in used:  # onnxruntime falls back silently when a provider fails
            raise DetectorError(f"{self.path}: {providers[0]} failed to initialise; got {used}")
        source = str(self.path)
        meta = parse_yolo_metadata(session.get_modelmeta().custom_metadata_map, source=source)
        model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
        self._input_name = model_input.name
        self._half = model_input.type == "tensor(float16)"
        in_shape = [_dim(d) for d in model_input.shape]
        validate_output_shape(
            [_dim(d) for d in model_output.shape],
            num_classes=len(meta.names),
            batch=None,
            source=source,
        )
        self._batch = in_shape[0] if in_shape else None
        self.info = ModelInfo(
            path=source,
            names=meta.names,
            input_size=resolve_input_size(in_shape, meta.imgsz, source=source),
            family="yolo",
            precision="fp16" if self._half else meta.precision,
        )
        logger.info(
            "loaded %s on %s: input %s, %d classes", source, used[0], in_shape, len(meta.names)
        )

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs with (empty once closed)."""
        return list(self._session.get_providers()) if self._session is not None else []

    @property
    def parallelism(self) -> int:
        """How many threads may usefully call :meth:`detect` at once."""
        return self._parallel

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect objects in BGR uint8 frames of any sizes.

        Raises:
            DetectorError: onnxruntime failed on this batch.
            ImageError: a frame is not a BGR uint8 (H, W, 3) array.
        """
        return detect_yolo(
            images,
            infer=self._infer,
            input_size=self.info.input_size,
            batch=self._batch,
            names=self.info.names,
            settings=self.settings,
            source=self.info.path,
        )

    def close(self) -> None:
        """Drop the session (its memory is freed when no batch still uses it)."""
        self._session = None

    def _infer(self, tensor: FloatArray) -> npt.NDArray[np.floating]:
        """Run the session on one input tensor."""
        if self._session is None:
            raise DetectorError(f"{self.path}: detector is closed")
        feed = tensor.astype(np.float16) if self._half else tensor
        try:
            outputs = self._session.run(None, {self._input_name: feed})
        # onnxruntime raises pybind-generated classes that share no public base but Exception.
        except Exception as err:
            raise DetectorError(
                f"{self.path}: onnxruntime failed on a batch of shape {tensor.shape}: {err}"
            ) from err
        return np.asarray(outputs[0])


def _open_session(path: Path, *, providers: list[str], threads: int | None) -> ort.InferenceSession:
    """Create the inference session, translating load failures into ModelError."""
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found; expected an ONNX file exported by ultralytics"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    # As above: any onnxruntime load failure (bad protobuf, invalid graph) is a bad model file.
    except Exception as err:
        raise ModelError(
            f"{path}: expected an ONNX model; onnxruntime cannot load it: {err}"
        ) from err


def _dim(value: object) -> int | None:
    """A static dimension as int; None for a symbolic (dynamic) one."""
    return value if isinstance(value, int) and value > 0 else None
