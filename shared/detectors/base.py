"""The detector interface shared by the edge agent and the cloud's HTTP ingest.

A backend runs one exported detection model on a batch of frames and returns, per frame, the
detections in frame pixels, with the time spent in each stage. Backends are small classes
around one runtime each (``onnxruntime.py``, ``openvino.py``, ``ssd_openvino.py``); they share
pre-processing (:mod:`lensflow.shared.detectors.preprocess`) and YOLO post-processing
(:mod:`lensflow.shared.detectors.postprocess`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from lensflow.shared.classifiers.base import Image


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object, in the pixel coordinates of the frame it was found in."""

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 with x1 < x2, y1 < y2

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Milliseconds spent per stage for one batch."""

    pre_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """Sum of the stages."""
        return self.pre_ms + self.infer_ms + self.post_ms


@dataclass(frozen=True, slots=True)
class DetectionBatch:
    """The detections of each frame of a batch (same order) and the batch's stage times."""

    detections: list[list[Detection]]
    times: StageTimes = field(default_factory=StageTimes)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a detection model is: read from the artifact's metadata, never guessed."""

    path: str
    names: dict[int, str]
    input_size: tuple[int, int]  # height, width the model expects
    family: str = "yolo"  # yolo | ssd
    precision: str = "fp32"


class DetectorBackend(ABC):
    """A detection model loaded in one runtime."""

    info: ModelInfo

    @abstractmethod
    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """Detect objects in a batch of BGR uint8 frames (any sizes).

        Raises:
            DetectorError: the runtime failed on this batch.
        """

    @property
    def parallelism(self) -> int:
        """How many :meth:`detect` calls may usefully run at once (default 1).

        A backend with a pool of requests, sessions or interpreters says how many; its
        :meth:`detect` is then safe to call from that many threads together.
        """
        return 1

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's resources (default: nothing)."""

    def __enter__(self) -> DetectorBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


DetectDone = Callable[[DetectionBatch | BaseException], None]
"""Called once per submitted batch: its detections, or the error the runtime raised."""


class AsyncDetector(ABC):
    """A backend with an asynchronous engine path (OpenVINO's ``AsyncInferQueue``)."""

    @abstractmethod
    def submit(self, images: Sequence[Image], *, done: DetectDone) -> None:
        """Start detecting ``images``; ``done`` gets the batch (or the error) on another thread.

        Blocks while every engine request is busy. Pre-processing runs on the caller's thread.

        Raises:
            DetectorError: The runtime refused the batch (``done`` is not called then).
            ImageError: A frame is not a BGR uint8 (H, W, 3) array.
        """
