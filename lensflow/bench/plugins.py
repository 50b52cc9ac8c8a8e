"""Classifier plugins for benchmarks, named in a pipeline YAML by dotted path.

:class:`NoOp` does no work and reads no pixels, so a pipeline whose only node is it measures
the worker's own costs: intake, JPEG header check (nothing is decoded), crop store, database,
acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output

NOOP_CLASS = "lensflow.bench.plugins.NoOp"
"""The ``class`` of a pipeline node running :class:`NoOp`."""


class NoOp(BaseClassifier):
    """Labels every crop ``noop`` without looking at it (one stored result row per crop)."""

    key = "bench_noop"
    version = "1"
    outputs = ("label",)
    needs_pixels = False

    def process(self, image: Image, context: Context) -> Output:
        """Return the constant label."""
        return {"label": "noop"}

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Return the constant label for each image, in one call."""
        return [{"label": "noop"} for _ in images]
