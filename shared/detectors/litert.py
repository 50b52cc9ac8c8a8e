"""TFLite SSD detectors on LiteRT (``ai-edge-litert``), the runtime of Coral-class cameras.

The model runs whole, its ``TFLite_Detection_PostProcess`` op included — what Frigate's CPU
detector does with the same file. Google's SSDs take a fixed ``[1, 300, 300, 3]`` uint8 RGB
image: each frame is resized to it (no letterbox: the SSD was trained on squashed images) and
run alone; the op gives normalised ``ymin, xmin, ymax, xmax`` boxes, class ids (counting from
the first non-background class) and scores, best first. Class names come from the labels file
beside the model.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import (
    Detection,
    DetectionBatch,
    DetectorBackend,
    ModelInfo,
    StageTimes,
)
from lensflow.shared.detectors.labels import labels_beside, read_labels
from lensflow.shared.detectors.tflite_ssd import has_postprocess_op
from lensflow.shared.errors import DetectorError, ImageError, ModelError

logger = logging.getLogger(__name__)


def resize_rgb(image: Image, size: tuple[int, int], *, source: str) -> npt.NDArray[np.uint8]:
    """A BGR frame as the SSD's ``(height, width)`` RGB uint8 input (no letterbox)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(
            f"{source}: expected a BGR uint8 image of shape (H, W, 3), got {image.dtype} "
            f"{image.shape}"
        )
    resized = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), dtype=np.uint8)


class LiteRtDetector(DetectorBackend):
    """A TFLite detection model with its post-process op, run by LiteRT."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "CPU",
        conf: float = 0.25,
        max_det: int = 100,
        threads: int | None = None,
        names: Mapping[int, str] | None = None,
        interpreters: int = 1,
    ) -> None:
        """Load the model.

        Args:
            path: The ``.tflite`` file.
            device: Only "CPU" (LiteRT's XNNPACK kernels).
            conf: Minimum score kept.
            max_det: Most detections per frame (the model gives at most its own maximum).
            threads: Interpreter threads; LiteRT's default when None.
            names: Class id → name; read from the labels file beside the model when None.
            interpreters: Interpreters kept, each running one frame at a time: that many
                threads may call :meth:`detect` at once.

        Raises:
            ModelError: Missing or unreadable file, no post-process op, no labels, or LiteRT
                is not installed.
            DetectorError: A device other than the CPU.

        """
        if not 0.0 <= conf <= 1.0 or max_det < 1:
            raise ValueError(f"conf must be in [0, 1] and max_det >= 1, got {conf}, {max_det}")
        if interpreters < 1:
            raise ValueError(f"interpreters must be >= 1, got {interpreters}")
        if device.upper() != "CPU":
            raise DetectorError(f"LiteRT runs on the CPU here, but device {device!r} was asked")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: expected a .tflite file, got none")
        if not has_postprocess_op(self.path):
            raise ModelError(
                f"{self.path}: expected a TFLite SSD ending in TFLite_Detection_PostProcess"
            )
        self.conf, self.max_det = conf, max_det
        first = _interpreter(self.path, threads)
        self._input, self._outputs = _io(first, self.path)
        # A pool: an interpreter is not thread-safe, so each call borrows one of its own.
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pool.put(first)
        for _ in range(interpreters - 1):
            self._pool.put(_interpreter(self.path, threads))
        self._size = interpreters
        shape = first.get_input_details()[0]["shape"]
        self.info = ModelInfo(
            path=str(self.path),
            names=dict(names) if names is not None else read_labels(labels_beside(self.path)),
            input_size=(int(shape[1]), int(shape[2])),
            family="ssd-tflite",
            precision="int8",
        )
        logger.info("loaded TFLite SSD %s on LiteRT", self.path)

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect objects in BGR uint8 frames of any sizes (one model call per frame).

        Raises:
            DetectorError: LiteRT failed on a frame.
            ImageError: A frame is not a BGR uint8 (H, W, 3) array.

        """
        pre = infer = post = 0.0
        detections = []
        for image in images:
            start = time.perf_counter()
            tensor = resize_rgb(image, self.info.input_size, source=self.info.path)[None]
            after_pre = time.perf_counter()
            boxes, classes, scores, count = self.invoke(tensor)
            after_infer = time.perf_counter()
            detections.append(self._decode(boxes, classes, scores, count, image.shape[:2]))
            pre += after_pre - start
            infer += after_infer - after_pre
            post += time.perf_counter() - after_infer
        times = StageTimes(pre_ms=pre * 1e3, infer_ms=infer * 1e3, post_ms=post * 1e3)
        return DetectionBatch(detections=detections, times=times)

    def invoke(self, tensor: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], ...]:
        """The engine call alone: one ``[1, H, W, 3]`` uint8 RGB tensor in, the op's outputs out.

        Raises:
            DetectorError: LiteRT failed.

        """
        interpreter = self._pool.get()
        try:
            interpreter.set_tensor(self._input, tensor)
            interpreter.invoke()
            return tuple(interpreter.get_tensor(i).copy() for i in self._outputs)
        except (RuntimeError, ValueError) as err:
            raise DetectorError(f"{self.info.path}: LiteRT failed: {err}") from err
        finally:
            self._pool.put(interpreter)

    @property
    def parallelism(self) -> int:
        """The interpreters in the pool."""
        return self._size

    def _decode(
        self,
        boxes: npt.NDArray[Any],
        classes: npt.NDArray[Any],
        scores: npt.NDArray[Any],
        count: npt.NDArray[Any],
        frame: tuple[int, ...],
    ) -> list[Detection]:
        rows = min(int(count[0]), self.max_det, scores.shape[1])
        height, width = frame[0], frame[1]
        found = []
        for row in range(rows):
            score = float(scores[0, row])
            if score <= self.conf:
                continue
            ymin, xmin, ymax, xmax = np.clip(boxes[0, row], 0.0, 1.0)
            box = (
                float(xmin * width),
                float(ymin * height),
                float(xmax * width),
                float(ymax * height),
            )
            if box[2] > box[0] and box[3] > box[1]:
                label = round(float(classes[0, row]))
                name = self.info.names.get(label, str(label))
                found.append(Detection(class_id=label, class_name=name, score=score, box=box))
        return found


def _interpreter(path: Path, threads: int | None) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ModelError(
            f"the litert backend needs ai-edge-litert ({err}): pip install 'lensflow[edge]'"
        ) from err
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"{path}: LiteRT cannot load the model: {err}") from err
    return interpreter


def _io(interpreter: Any, path: Path) -> tuple[int, tuple[int, ...]]:
    """The input's index and the op's four outputs in order: boxes, classes, scores, count."""
    inputs = interpreter.get_input_details()
    outputs = sorted(interpreter.get_output_details(), key=lambda d: d["name"])
    shape = inputs[0]["shape"] if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[0] != 1 or inputs[0]["dtype"] != np.uint8:
        raise ModelError(f"{path}: expected one [1, H, W, 3] uint8 image input")
    if len(outputs) != 4:
        raise ModelError(f"{path}: expected the post-process op's 4 outputs, got {len(outputs)}")
    return int(inputs[0]["index"]), tuple(int(d["index"]) for d in outputs)
