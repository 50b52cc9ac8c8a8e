"""Classifier batching: images/s of a real classifier plugin at batch 1 and at batch N.

The plugin is :class:`~lensflow.shared.classifiers.onnx_classifier.OnnxClassifier` on a real model
(EfficientNet-Lite0 from the model manifest, exported to ONNX with a dynamic batch axis). Both
figures go through the same call the cloud DAG makes, ``process_batch(images, contexts)``:
once per image, then once per N images, on the same real crops; rounds alternate the two and
the medians are kept. The top-1 labels of both must agree.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lensflow.bench.samples import crop_images
from lensflow.shared.classifiers.base import Context, Image, Output
from lensflow.shared.classifiers.onnx_classifier import OnnxClassifier, OnnxClassifierParams


@dataclass
class BatchingBench:
    """Images per second through ``process_batch`` at batch 1 and at batch N (medians)."""

    model: str
    batch: int
    images: int
    single_per_s: float = 0.0
    batched_per_s: float = 0.0
    single_rounds: list[float] = field(default_factory=list)
    batched_rounds: list[float] = field(default_factory=list)
    same_labels: float = 0.0

    @property
    def ratio(self) -> float:
        """Batched over unbatched throughput."""
        return self.batched_per_s / self.single_per_s if self.single_per_s else 0.0


def run_batching(
    artifact: Path, *, batch: int = 16, images: int = 64, rounds: int = 5
) -> BatchingBench:
    """Measure the classifier on ``images`` real crops, one by one and ``batch`` at a time.

    Args:
        artifact: The classifier's ONNX file.
        batch: The batch size compared with 1.
        images: Crops per measurement.
        rounds: Alternated measurements of each; the medians are reported.

    Returns:
        The figures, and the share of crops whose top-1 label is the same both ways.

    """
    plugin = OnnxClassifier(OnnxClassifierParams(model=str(artifact)))
    plugin.warmup()
    crops = [image for image, _box, _frame in crop_images(images)]
    contexts: list[Context] = [{} for _ in crops]
    result = BatchingBench(model=str(artifact), batch=batch, images=len(crops))
    _timed(plugin, crops, contexts, batch=batch)  # warm-up at the batch size as well
    singles: list[Output] = []
    batched: list[Output] = []
    for _ in range(rounds):
        rate, singles = _timed(plugin, crops, contexts, batch=1)
        result.single_rounds.append(rate)
        rate, batched = _timed(plugin, crops, contexts, batch=batch)
        result.batched_rounds.append(rate)
    result.single_per_s = statistics.median(result.single_rounds)
    result.batched_per_s = statistics.median(result.batched_rounds)
    same = sum(a["label"] == b["label"] for a, b in zip(singles, batched, strict=True))
    result.same_labels = same / len(crops)
    return result


def _timed(
    plugin: OnnxClassifier, crops: Sequence[Image], contexts: Sequence[Context], *, batch: int
) -> tuple[float, list[Output]]:
    """Images per second through ``process_batch`` in chunks of ``batch``; and the outputs."""
    outputs: list[Output] = []
    start = time.perf_counter()
    for first in range(0, len(crops), batch):
        outputs += plugin.process_batch(
            crops[first : first + batch], contexts[first : first + batch]
        )
    return len(crops) / (time.perf_counter() - start), outputs
