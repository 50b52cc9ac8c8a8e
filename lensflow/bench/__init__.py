"""Benchmarks: each prints its figures and the ratio against its baseline, measured in one run."""

from lensflow.shared.errors import LensflowError


class BenchError(LensflowError):
    """A benchmark could not run to the end (a service did not start or a consumer stalled)."""


__all__ = ["BenchError"]
