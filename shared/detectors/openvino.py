"""YOLO detect models in OpenVINO (``pip install 'lensflow[edge]'``): IR (.xml + .bin) or .onnx.

Compiled with ``INFERENCE_PRECISION_HINT=f32`` by default: on CPUs with bf16/AMX OpenVINO would
otherwise run an FP32 IR in bf16 and drift from the other runtimes. A static-batch export is
reshaped to a dynamic batch once at load, so any batch size runs in one call (where the graph
cannot be reshaped, frames go in chunks of its batch size). :meth:`OpenVinoDetector.detect_stream`
pipelines frames through an ``AsyncInferQueue`` for throughput; :meth:`OpenVinoDetector.submit`
puts batches from many threads (the edge agent's cameras) into one such queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openvino as ov

from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import (
    AsyncDetector,
    DetectDone,
    Detection,
    DetectionBatch,
    DetectorBackend,
    ModelInfo,
    StageTimes,
)
from lensflow.shared.detectors.metadata import (
    YoloMetadata,
    read_openvino_metadata,
    resolve_input_size,
)
from lensflow.shared.detectors.openvino_model import (
    compile_model,
    read_model,
    resolve_model_file,
    rt_sections,
)
from lensflow.shared.detectors.postprocess import (
    DecodeSettings,
    decode_yolo,
    detect_yolo,
    validate_output_shape,
)
from lensflow.shared.detectors.preprocess import FloatArray, Letterbox, fixed_batches, preprocess
from lensflow.shared.errors import DetectorError, ImageError, ModelError

logger = logging.getLogger(__name__)


class OpenVinoDetector(DetectorBackend, AsyncDetector):
    """An ultralytics YOLO detect model in OpenVINO; names and input size from its metadata."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "CPU",
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        precision_hint: str | None = "f32",
        performance_hint: str = "LATENCY",
        threads: int | None = None,
        requests: int | None = None,
    ) -> None:
        """Read and compile the model.

        Args:
            path: an .xml (with its .bin), a folder holding one (ultralytics'
                ``*_openvino_model/``), or an .onnx file.
            device: an OpenVINO device name ("CPU", "GPU", "NPU", "AUTO", ...).
            conf: minimum class score kept.
            iou: NMS IoU threshold (ultralytics' default 0.7).
            max_det: most detections per frame.
            precision_hint: ``INFERENCE_PRECISION_HINT`` ("f32", "f16", "bf16"); None leaves
                the device's default.
            performance_hint: "LATENCY" or "THROUGHPUT".
            threads: ``INFERENCE_NUM_THREADS``; the device's default when None.
            requests: with THROUGHPUT, how many requests will run at once
                (``PERFORMANCE_HINT_NUM_REQUESTS``: one camera gets every core, two get a
                stream each); the device's optimum when None.

        Raises:
            ModelError: missing / unreadable file, missing metadata, or not a YOLO detect head.
            DetectorError: the device cannot compile the model.
        """
        self.path = resolve_model_file(path, suffixes=(".xml", ".onnx"))
        self.settings = DecodeSettings(conf=conf, iou=iou, max_det=max_det)
        source = str(self.path)
        core = ov.Core()
        model = read_model(core, self.path)
        meta = read_openvino_metadata(self.path, rt_sections(model))
        input_size, static_batch = _check_yolo_io(model, meta, source=source)
        self._batch = _make_batch_dynamic(model, input_size) if static_batch else None
        self._compiled = compile_model(
            core,
            model,
            device=device,
            precision_hint=precision_hint,
            performance_hint=performance_hint,
            threads=threads,
            source=source,
            num_requests=requests,
        )
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one sync request: one detect() at a time
        self._requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._queue: ov.AsyncInferQueue | None = None  # for submit(), made on first use
        self._queue_lock = threading.Lock()
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        self.info = ModelInfo(
            path=source,
            names=meta.names,
            input_size=input_size,
            family="yolo",
            precision="int8" if quantized else meta.precision,
        )
        logger.info("loaded %s on %s: %d classes", source, device, len(meta.names))

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect objects in BGR uint8 frames of any sizes.

        Raises:
            DetectorError: OpenVINO failed on this batch.
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

    @property
    def parallelism(self) -> int:
        """The compiled model's optimal number of infer requests (1 with the LATENCY hint)."""
        return self._requests

    def submit(self, images: Sequence[Image], *, done: DetectDone) -> None:
        """Pre-process here, infer on the shared ``AsyncInferQueue``, decode in its callback.

        Args:
            images: BGR uint8 frames of any sizes.
            done: Gets the :class:`DetectionBatch`, or the error decoding raised.

        Raises:
            DetectorError: OpenVINO refused the request.
            ImageError: A frame is not a BGR uint8 (H, W, 3) array.

        """
        start = time.perf_counter()
        try:
            prepared = preprocess(images, input_size=self.info.input_size)
        except ValueError as err:
            raise ImageError(f"{self.info.path}: {err}") from err
        chunks = list(fixed_batches(prepared.tensor, self._batch))
        if len(chunks) != 1:  # more frames than a fixed-batch model takes: the sync path
            done(self.detect(images))
            return
        chunk, valid = chunks[0]
        job = _Job(prepared.letterboxes, valid, done, start, time.perf_counter(), chunk)
        try:
            with self._queue_lock:  # start_async waits (GIL released) for an idle request
                if self._queue is None:
                    self._queue = ov.AsyncInferQueue(self._compiled, self._requests)
                    self._queue.set_callback(self._finished)
                # the request reads the job's own tensor in place (no 4.9 MB copy a frame)
                self._queue.start_async({0: job.tensor}, userdata=job, share_inputs=True)
        except RuntimeError as err:
            raise DetectorError(f"{self.info.path}: OpenVINO refused a request: {err}") from err

    def _finished(self, request: ov.InferRequest, job: _Job) -> None:
        """AsyncInferQueue callback: decode one finished request and hand it to its caller."""
        after_infer = time.perf_counter()
        try:
            output = _first_output(request)[: job.valid]
            detections = decode_yolo(
                output,
                letterboxes=job.letterboxes,
                names=self.info.names,
                settings=self.settings,
                source=self.info.path,
            )
        except Exception as err:  # any failure goes to the waiting caller, not OpenVINO
            job.done(err)
            return
        times = StageTimes(
            pre_ms=(job.submitted - job.started) * 1e3,
            infer_ms=(after_infer - job.submitted) * 1e3,
            post_ms=(time.perf_counter() - after_infer) * 1e3,
        )
        job.done(DetectionBatch(detections=detections, times=times))

    def close(self) -> None:
        """Wait for the requests still running in the async queue."""
        with self._queue_lock:
            if self._queue is not None:
                self._queue.wait_all()

    def detect_stream(
        self, frames: Iterable[Image], *, requests: int = 2
    ) -> Iterator[list[Detection]]:
        """Detect frame by frame through a pool of infer requests, for throughput.

        Pre-processing of a frame overlaps inference of the ones before it, and decoding of
        finished frames overlaps inference of later ones. Results come in input order.

        Args:
            frames: BGR uint8 frames, e.g. a camera generator.
            requests: infer requests in flight (at least 2 to overlap).

        Yields:
            Each frame's detections, in input order.

        Raises:
            DetectorError: OpenVINO failed on a frame.
            ImageError: a frame is not a BGR uint8 (H, W, 3) array.
        """
        queue = ov.AsyncInferQueue(self._compiled, max(1, requests))
        done: dict[int, npt.NDArray[np.float32]] = {}  # written by OpenVINO's callback threads
        letterboxes: dict[int, Letterbox] = {}

        def on_done(request: ov.InferRequest, index: int) -> None:
            done[index] = _first_output(request)

        queue.set_callback(on_done)
        submitted = emitted = 0
        try:
            for index, frame in enumerate(frames):
                try:
                    prepared = preprocess([frame], input_size=self.info.input_size)
                except ValueError as err:
                    raise ImageError(f"{self.info.path}: frame {index}: {err}") from err
                letterboxes[index] = prepared.letterboxes[0]
                chunk, _ = next(fixed_batches(prepared.tensor, self._batch))
                self._start(queue, chunk, index)
                submitted += 1
                while emitted in done:
                    yield self._decode_frame(done.pop(emitted), letterboxes.pop(emitted))
                    emitted += 1
            queue.wait_all()
            for index in range(emitted, submitted):
                if index not in done:
                    raise DetectorError(f"{self.info.path}: no result for frame {index}")
                yield self._decode_frame(done.pop(index), letterboxes.pop(index))
        finally:
            queue.wait_all()  # never leave requests writing into freed memory

    def _start(self, queue: ov.AsyncInferQueue, chunk: FloatArray, index: int) -> None:
        """Submit one frame to the queue (blocks while every request is busy)."""
        try:
            queue.start_async({0: chunk}, userdata=index)
        except RuntimeError as err:
            raise DetectorError(
                f"{self.info.path}: OpenVINO failed on frame {index}: {err}"
            ) from err

    def _decode_frame(
        self, output: npt.NDArray[np.float32], letterbox: Letterbox
    ) -> list[Detection]:
        """Decode the first item of one request's output."""
        return decode_yolo(
            output[:1],
            letterboxes=[letterbox],
            names=self.info.names,
            settings=self.settings,
            source=self.info.path,
        )[0]

    def _infer(self, tensor: FloatArray) -> npt.NDArray[np.floating]:
        """Run the sync request on one input tensor; returns a copy of output 0."""
        try:
            with self._lock:
                self._request.infer({0: tensor})
                return _first_output(self._request)
        except RuntimeError as err:
            raise DetectorError(
                f"{self.info.path}: OpenVINO failed on a batch of shape {tensor.shape}: {err}"
            ) from err


@dataclass(frozen=True, slots=True)
class _Job:
    """What the async callback needs to finish one submitted batch."""

    letterboxes: list[Letterbox]
    valid: int
    done: DetectDone
    started: float
    submitted: float
    tensor: FloatArray  # the input, shared with the request: alive until it finished


def _first_output(request: ov.InferRequest) -> npt.NDArray[np.float32]:
    """A copy of a request's first output (its buffer is reused by the next inference)."""
    return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)


def _check_yolo_io(
    model: ov.Model, meta: YoloMetadata, *, source: str
) -> tuple[tuple[int, int], bool]:
    """Check one (N, 3, H, W) input and a YOLO head output; returns (H, W) and static batch."""
    if len(model.inputs) != 1:
        raise ModelError(f"{source}: expected one image input, got {len(model.inputs)}")
    in_shape = _shape(model.inputs[0].get_partial_shape())
    validate_output_shape(
        _shape(model.outputs[0].get_partial_shape()),
        num_classes=len(meta.names),
        batch=None,
        source=source,
    )
    input_size = resolve_input_size(in_shape, meta.imgsz, source=source)
    return input_size, in_shape[0] is not None


def _make_batch_dynamic(model: ov.Model, input_size: tuple[int, int]) -> int | None:
    """Reshape a static-batch model to any batch size; returns the batch left fixed, if any.

    Graphs with the batch baked into constants (a simplified ONNX) accept the reshape but keep
    a static output batch; those go back to their own shape.
    """
    original = model.inputs[0].get_partial_shape()
    fixed = int(original[0].get_length())
    try:
        model.reshape({0: ov.PartialShape([-1, 3, *input_size])})
    except RuntimeError as err:
        logger.info("model keeps its fixed batch %d (cannot reshape: %s)", fixed, err)
        return fixed
    if model.outputs[0].get_partial_shape()[0].is_dynamic:
        return None
    model.reshape({0: original})
    logger.info("model keeps its fixed batch %d (batch is baked into the graph)", fixed)
    return fixed


def _shape(shape: ov.PartialShape) -> list[int | None]:
    """A partial shape as a list, None for dynamic dimensions."""
    return [d.get_length() if d.is_static else None for d in shape]
