"""``lensflow bench edge`` for a TFLite SSD: our path beside Frigate's, on the same model.

In one run, on the same frames and model file, with the same number of threads:

* **ours**, per runtime (LiteRT running the file whole; OpenVINO without the post-process
  op, decoded by lensflow): wall time per frame of ``detect()``, its stages, and the raw
  engine call alone on a prepared input — the ratio ours / raw is the overhead lensflow adds;
* **Frigate's CPU detector**: what its ``cpu`` detector does per frame (LiteRT interpreter on
  the original file: set the 300x300 input, invoke, read the op's four outputs, keep scores
  >= 0.4 into a 20x6 array), timed with and without the resize Frigate does in its camera
  process.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lensflow.bench.edge import median_ms
from lensflow.shared.classifiers.base import Image
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.detectors.litert import resize_rgb

RUNTIMES = ("litert", "openvino")


@dataclass
class RuntimeFigures:
    """One runtime's figures, in milliseconds per frame."""

    runtime: str
    pre_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0
    frame_ms: float = 0.0
    raw_ms: float = 0.0

    @property
    def overhead(self) -> float:
        """Per-frame wall time over the raw engine call (target <= 1.10)."""
        return self.frame_ms / self.raw_ms


@dataclass
class SsdBench:
    """Figures of one run."""

    model: str
    frames: int
    threads: int
    runtimes: dict[str, RuntimeFigures] = field(default_factory=dict)
    frigate_ms: float = 0.0
    frigate_with_resize_ms: float = 0.0

    def ratios(self, ours: str) -> dict[str, tuple[float, str, bool]]:
        """Each ratio with its target and whether it is met; ``ours`` is the chosen runtime."""
        mine = self.runtimes[ours]
        other = "openvino" if ours == "litert" else "litert"
        return {
            f"ours ({ours}) per frame / raw engine call": (
                mine.overhead,
                "<= 1.10",
                mine.overhead <= 1.10,
            ),
            f"ours ({other}) per frame / raw engine call (info)": (
                self.runtimes[other].overhead,
                "none",
                True,
            ),
            "Frigate's CPU detector (with resize) / our OpenVINO path (info)": (
                self.frigate_with_resize_ms / self.runtimes["openvino"].frame_ms,
                "none",
                True,
            ),
        }


def run_ssd_bench(
    model: Path, *, frames: Sequence[Image], threads: int, repeats: int = 30
) -> SsdBench:
    """Measure both runtimes and Frigate's CPU detector on ``model`` (a TFLite SSD)."""
    result = SsdBench(model=str(model), frames=len(frames), threads=threads)
    for runtime in RUNTIMES:
        result.runtimes[runtime] = _runtime(model, runtime, frames, threads, repeats)
    result.frigate_ms, result.frigate_with_resize_ms = _frigate(model, frames, threads, repeats)
    return result


def _runtime(
    model: Path, runtime: str, frames: Sequence[Image], threads: int, repeats: int
) -> RuntimeFigures:
    detector: Any = load_detector(model, backend=runtime, threads=threads)  # type: ignore[arg-type]
    figures = RuntimeFigures(runtime)
    stages: list[tuple[float, float, float]] = []
    cycle = _cycle(frames)

    def ours() -> None:
        times = detector.detect([next(cycle)]).times
        stages.append((times.pre_ms, times.infer_ms, times.post_ms))

    figures.frame_ms = median_ms(ours, repeats=repeats)
    pre, infer, post = (statistics.median(s) for s in zip(*stages[2:], strict=True))
    figures.pre_ms, figures.infer_ms, figures.post_ms = pre, infer, post
    tensor = resize_rgb(frames[0], detector.info.input_size, source=str(model))[None]
    figures.raw_ms = median_ms(lambda: detector.invoke(tensor), repeats=repeats)
    detector.close()
    return figures


def _frigate(
    model: Path, frames: Sequence[Image], threads: int, repeats: int
) -> tuple[float, float]:
    """Frigate's ``cpu`` detector's per-frame work, alone and with the resize before it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    size = (int(inputs[0]["shape"][1]), int(inputs[0]["shape"][2]))

    def detect_raw(tensor: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inputs[0]["index"], tensor)
        interpreter.invoke()
        boxes = interpreter.tensor(outputs[0]["index"])()[0]
        class_ids = interpreter.tensor(outputs[1]["index"])()[0]
        scores = interpreter.tensor(outputs[2]["index"])()[0]
        count = int(interpreter.tensor(outputs[3]["index"])()[0])
        detections = np.zeros((20, 6), np.float32)
        for i in range(min(count, 20)):
            if scores[i] < 0.4:
                break
            detections[i] = [class_ids[i], float(scores[i]), *boxes[i]]
        return detections

    tensor = resize_rgb(frames[0], size, source=str(model))[None]
    alone = median_ms(lambda: detect_raw(tensor), repeats=repeats)
    cycle = _cycle(frames)
    with_resize = median_ms(
        lambda: detect_raw(resize_rgb(next(cycle), size, source=str(model))[None]),
        repeats=repeats,
    )
    return alone, with_resize


def _cycle(frames: Sequence[Image]) -> Any:
    while True:
        yield from frames
