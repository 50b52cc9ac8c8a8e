"""TFLite SSDs on OpenVINO: the model without its post-process op, then lensflow's decode.

OpenVINO's TFLite frontend refuses ``TFLite_Detection_PostProcess``. At load the op is cut
off (:func:`lensflow.shared.detectors.tflite_ssd.read_ssd`: the same weights, whose outputs
are the op's inputs), OpenVINO compiles the rest, and
:func:`lensflow.shared.detectors.ssd_decode.decode_ssd` decodes and suppresses as the op
would. Same pre-processing as LiteRT: each frame resized to the model's 300x300 uint8 RGB.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import DetectionBatch, DetectorBackend, ModelInfo, StageTimes
from lensflow.shared.detectors.labels import labels_beside, read_labels
from lensflow.shared.detectors.litert import resize_rgb
from lensflow.shared.detectors.openvino_model import compile_model
from lensflow.shared.detectors.ssd_decode import decode_ssd
from lensflow.shared.detectors.tflite_ssd import SsdGraph, read_ssd
from lensflow.shared.errors import DetectorError, ModelError

logger = logging.getLogger(__name__)


class SsdTfliteOpenVinoDetector(DetectorBackend):
    """A TFLite SSD run by OpenVINO without its post-process op, decoded in numpy."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "CPU",
        conf: float = 0.25,
        max_det: int = 100,
        precision_hint: str | None = "f32",
        performance_hint: str = "LATENCY",
        threads: int | None = None,
        names: Mapping[int, str] | None = None,
    ) -> None:
        """Cut the op off, then read and compile the model.

        Args:
            path: The ``.tflite`` file (with its post-process op).
            device: An OpenVINO device name.
            conf: Minimum score kept.
            max_det: Most detections per frame (the op's own maximum applies too).
            precision_hint: ``INFERENCE_PRECISION_HINT``; None leaves the device's default.
            performance_hint: "LATENCY" or "THROUGHPUT".
            threads: ``INFERENCE_NUM_THREADS``; the device's default when None.
            names: Class id → name; read from the labels file beside the model when None.

        Raises:
            ModelError: Not a TFLite SSD, no labels, or OpenVINO cannot read the cut model.
            DetectorError: The device cannot compile it.

        """
        if not 0.0 <= conf <= 1.0 or max_det < 1:
            raise ValueError(f"conf must be in [0, 1] and max_det >= 1, got {conf}, {max_det}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: expected a .tflite file, got none")
        self.conf, self.max_det = conf, max_det
        self.graph: SsdGraph = read_ssd(self.path)
        core = ov.Core()
        model = _read_cut(core, self.graph, source=str(self.path))
        self._compiled = compile_model(
            core,
            model,
            device=device,
            precision_hint=precision_hint,
            performance_hint=performance_hint,
            threads=threads,
            source=str(self.path),
        )
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self.info = ModelInfo(
            path=str(self.path),
            names=dict(names) if names is not None else read_labels(labels_beside(self.path)),
            input_size=self.graph.input_size,
            family="ssd-tflite",
            precision="int8",
        )
        logger.info("loaded TFLite SSD %s on OpenVINO %s (post-process cut off)", path, device)

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect objects in BGR uint8 frames of any sizes (one model call per frame).

        Raises:
            DetectorError: OpenVINO failed on a frame.
            ImageError: A frame is not a BGR uint8 (H, W, 3) array.

        """
        pre = infer = post = 0.0
        detections = []
        options = self.graph.options
        limited = replace(options, max_detections=min(options.max_detections, self.max_det))
        for image in images:
            start = time.perf_counter()
            tensor = resize_rgb(image, self.info.input_size, source=self.info.path)[None]
            after_pre = time.perf_counter()
            encodings, scores = self.invoke(tensor)
            after_infer = time.perf_counter()
            detections.append(
                decode_ssd(
                    self._real(encodings[0], self.graph.boxes),
                    self._real(scores[0], self.graph.scores),
                    anchors=self.graph.anchors,
                    options=limited,
                    conf=self.conf,
                    frame=(image.shape[0], image.shape[1]),
                    names=self.info.names,
                )
            )
            pre += after_pre - start
            infer += after_infer - after_pre
            post += time.perf_counter() - after_infer
        times = StageTimes(pre_ms=pre * 1e3, infer_ms=infer * 1e3, post_ms=post * 1e3)
        return DetectionBatch(detections=detections, times=times)

    def invoke(self, tensor: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """The engine call alone: a ``[1, H, W, 3]`` uint8 RGB tensor in, encodings and scores out.

        Raises:
            DetectorError: OpenVINO failed.

        """
        try:
            with self._lock:
                self._request.infer({0: tensor})
                return (
                    np.array(self._request.get_output_tensor(0).data),
                    np.array(self._request.get_output_tensor(1).data),
                )
        except RuntimeError as err:
            raise DetectorError(f"{self.info.path}: OpenVINO failed: {err}") from err

    @staticmethod
    def _real(values: npt.NDArray[Any], quant: Any) -> npt.NDArray[np.float32]:
        if quant is None:
            return values.astype(np.float32, copy=False)
        real: npt.NDArray[np.float32] = quant.dequantize(values)
        return real


def _read_cut(core: ov.Core, graph: SsdGraph, *, source: str) -> ov.Model:
    """OpenVINO reads a TFLite model from a file: the cut model goes through a temp file."""
    with tempfile.TemporaryDirectory(prefix="lensflow-ssd-") as folder:
        cut = Path(folder) / "model.tflite"
        cut.write_bytes(graph.cut)
        try:
            model = core.read_model(str(cut))
        except RuntimeError as err:
            raise ModelError(
                f"{source}: OpenVINO cannot read the model without its op: {err}"
            ) from err
    if len(model.outputs) != 2:
        raise DetectorError(f"{source}: expected 2 outputs after the cut, got {len(model.outputs)}")
    return model
