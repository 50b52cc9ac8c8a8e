"""``lensflow bench edge``: the detector path against its baselines, in one run.

Baselines: the raw engine call, ultralytics' predict loop and the engine's own throughput
limit, all on the same artifact and frames.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.models.export.accuracy import detection_f1
from lensflow.models.export.artifacts import Backend
from lensflow.models.export.reference import reference_detections
from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.base import Detection, DetectorBackend
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.detectors.preprocess import preprocess

OV_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


@dataclass
class EdgeBench:
    """Figures of one run (milliseconds per frame and frames per second)."""

    artifact: str
    backend: str
    frames: int
    stages_ms: dict[str, float] = field(default_factory=dict)
    ours_ms: float = 0.0
    raw_ms: float = 0.0
    ultralytics_ms: float = 0.0
    sustained_fps: float = 0.0
    limit_fps: float = 0.0
    same_detections_f1: float = 0.0
    fp32_raw_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, tuple[float, str, bool]]:
        """Each ratio with its target and whether it is met."""
        rows = {
            "ours / raw engine call": (
                self.ours_ms / self.raw_ms,
                "<= 1.10",
                self.ours_ms / self.raw_ms <= 1.10,
            ),
            "sustained / engine throughput limit": (
                self.sustained_fps / self.limit_fps,
                ">= 0.90",
                self.sustained_fps / self.limit_fps >= 0.90,
            ),
            "ultralytics predict / ours, same artifact (info)": (
                self.ultralytics_ms / self.ours_ms,
                "none",
                True,
            ),
        }
        if self.fp32_raw_ms is not None:
            ratio = self.fp32_raw_ms / self.raw_ms
            rows["INT8 speed-up vs FP32 (f32 hint)"] = (ratio, ">= 2.5", ratio >= 2.5)
        return rows


def median_ms(call: Callable[[], Any], *, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``call`` in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_edge_bench(
    artifact: Path,
    *,
    backend: Backend,
    frames: Sequence[Image],
    repeats: int = 20,
    fp32_artifact: Path | None = None,
    rounds: int = 3,
) -> EdgeBench:
    """Measure everything on ``artifact``; ``fp32_artifact`` adds the INT8-vs-FP32 ratio."""
    result = EdgeBench(artifact=str(artifact), backend=backend, frames=len(frames))
    detector = load_detector(artifact, backend=backend)
    size = detector.info.input_size
    cycle = _cycler(frames)
    stages: list[tuple[float, float, float]] = []

    def ours() -> None:
        times = detector.detect([next(cycle)]).times
        stages.append((times.pre_ms, times.infer_ms, times.post_ms))

    result.ours_ms = median_ms(ours, repeats=repeats)
    pre, infer, post = (statistics.median(s) for s in zip(*stages[2:], strict=True))
    result.stages_ms = {"pre": pre, "infer": infer, "post": post}
    tensor = preprocess([frames[0]], input_size=size).tensor
    result.raw_ms = median_ms(_raw_call(artifact, backend, tensor), repeats=repeats)
    if fp32_artifact is not None:
        result.fp32_raw_ms = median_ms(_raw_call(fp32_artifact, backend, tensor), repeats=repeats)
    sequential = [detector.detect([f]).detections[0] for f in frames]
    detector.close()
    result.ultralytics_ms = _ultralytics_ms(artifact, frames, size=size[0], repeats=repeats)
    # Throughput figures drift with the machine's load: alternate the two, take medians.
    sustained, limits = [], []
    for _ in range(rounds):
        streamed, fps = _sustained(artifact, backend, frames)
        sustained.append(fps)
        limits.append(
            engine_limit(
                artifact,
                backend,
                tensor,
                count=len(frames),
                raw_ms=result.raw_ms,
                notes=result.notes,
            )
        )
    result.sustained_fps = statistics.median(sustained)
    result.limit_fps = statistics.median(limits)
    result.same_detections_f1 = detection_f1(sequential, streamed, iou=0.99).f1
    result.notes = sorted(set(result.notes))
    return result


def _cycler(frames: Sequence[Image]) -> Any:
    while True:
        yield from frames


def _raw_call(artifact: Path, backend: str, tensor: np.ndarray) -> Callable[[], Any]:
    """The engine alone on a prepared input: no pre- or post-processing."""
    if backend == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(artifact)), "CPU", OV_CONFIG)
        request = compiled.create_infer_request()
        return lambda: request.infer({0: tensor})
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: tensor})


def _ultralytics_ms(artifact: Path, frames: Sequence[Image], *, size: int, repeats: int) -> float:
    cycle = _cycler(frames)
    reference_detections(artifact, [frames[0]], imgsz=size)  # load + warm up once
    from ultralytics.models import YOLO

    model = YOLO(str(artifact.parent if artifact.suffix == ".xml" else artifact), task="detect")
    return median_ms(
        lambda: model.predict(next(cycle), imgsz=size, rect=False, verbose=False, save=False),
        repeats=repeats,
    )


def _sustained(
    artifact: Path, backend: str, frames: Sequence[Image]
) -> tuple[list[list[Detection]], float]:
    """Frames per second of the pipelined path (OpenVINO async requests, THROUGHPUT hint)."""
    detector: DetectorBackend
    if backend == "openvino":
        from lensflow.shared.detectors.openvino import OpenVinoDetector

        pipelined = OpenVinoDetector(artifact, performance_hint="THROUGHPUT")
        detector = pipelined
        requests = int(pipelined._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        list(pipelined.detect_stream(frames[:4], requests=requests))  # warm up
        start = time.perf_counter()
        streamed = list(pipelined.detect_stream(frames, requests=requests))
    else:
        detector = load_detector(artifact, backend="onnxruntime")
        detector.detect([frames[0]])
        start = time.perf_counter()
        streamed = [detector.detect([f]).detections[0] for f in frames]
    elapsed = time.perf_counter() - start
    detector.close()
    return streamed, len(frames) / elapsed


def throughput_queue(model_file: Path, tensor: np.ndarray) -> Any:
    """An OpenVINO ``AsyncInferQueue`` on the THROUGHPUT hint, warmed up on ``tensor``.

    As many requests as OpenVINO finds optimal, f32 inference precision.
    """
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(model_file)),
        "CPU",
        {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"},
    )
    queue = ov.AsyncInferQueue(
        compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    )
    run_queue(queue, tensor, 4)
    return queue


def run_queue(queue: Any, tensor: np.ndarray, count: int) -> None:
    """Infer ``tensor`` ``count`` times on ``queue``, as many at once as it has requests."""
    for _ in range(count):
        queue.start_async({0: tensor})
    queue.wait_all()


def engine_limit(
    artifact: Path, backend: str, tensor: np.ndarray, *, count: int, raw_ms: float, notes: list[str]
) -> float:
    """The engine's own throughput: OpenVINO THROUGHPUT hint + AsyncInferQueue, no pre/post."""
    if backend != "openvino":
        notes.append("onnxruntime has no async engine API: its limit is 1 / raw call")
        return 1000.0 / raw_ms
    queue = throughput_queue(artifact, tensor)
    start = time.perf_counter()
    run_queue(queue, tensor, count)
    return count / (time.perf_counter() - start)
