"""How the agent loads its detector: the loader it is given, and for how many frames at once."""

from __future__ import annotations

from typing import Protocol

from lensflow.edge.detector_service import DEFAULT_PER_CAMERA
from lensflow.shared.config.edge import DetectorConfig, EdgeConfig
from lensflow.shared.detectors.base import DetectorBackend


class DetectorLoader(Protocol):
    """Loads the detector a config names for ``parallel`` cameras; it and its sha256."""

    def __call__(
        self, config: DetectorConfig, /, *, parallel: int = 1
    ) -> tuple[DetectorBackend, str]:
        """Load it (``parallel``: see :func:`~lensflow.shared.detectors.factory.load_detector`)."""
        ...


def detector_parallelism(config: EdgeConfig) -> int:
    """Frames the detector will be given at once, as many as it should run in parallel.

    One per gated camera, ``per_camera`` for the others (they pipeline), and no more than
    one per camera beyond a single camera's two.
    """
    in_flight = sum(1 if c.motion.enabled else DEFAULT_PER_CAMERA for c in config.cameras)
    return max(1, min(in_flight, max(2, len(config.cameras))))
