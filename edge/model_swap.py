"""Load a registry bundle's detector and prove it fit to run before it replaces the old one.

Everything here runs off the frame path, on the agent's config thread: the cameras keep
detecting with the running model meanwhile. A model is fit when it loads, its classes and
input size are those its card declares, every class the camera filters name is among them,
and a warm-up frame goes through it giving one list of detections. Any failure is a
:class:`ModelSwapError` (or the loader's own ``ModelError``) whose message becomes the
``rejected`` config ack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from lensflow.edge.model_fetch import FetchedBundle
from lensflow.shared.config.edge import DetectorConfig, EdgeConfig
from lensflow.shared.detectors.base import DetectorBackend
from lensflow.shared.errors import ModelError

logger = logging.getLogger(__name__)

DetectorLoader = Callable[[DetectorConfig], tuple[DetectorBackend, str]]


class ModelSwapError(ModelError):
    """A downloaded model loaded but is not fit to replace the running one."""


def load_bundle_detector(
    bundle: FetchedBundle, config: EdgeConfig, *, load: DetectorLoader
) -> tuple[DetectorBackend, str]:
    """Load, check and warm up the detector of ``bundle``; it and the bundle's sha256.

    Raises:
        ModelError: It does not load (from ``load``), or (:class:`ModelSwapError`) its outputs
            are not what its card and the config expect, or the warm-up frame fails.

    """
    detector, _file_sha = load(config.detector.model_copy(update={"model": str(bundle.artifact)}))
    try:
        check_outputs(detector, bundle, config)
        warm_up(detector)
    except BaseException:
        detector.close()
        raise
    return detector, bundle.sha256


def check_outputs(detector: DetectorBackend, bundle: FetchedBundle, config: EdgeConfig) -> None:
    """Compare the loaded model's classes and input size with its card and the filters.

    Raises:
        ModelSwapError: Naming what was expected and what the model has.

    """
    info, card = detector.info, bundle.card
    if tuple(info.input_size) != tuple(card.input_size):
        raise ModelSwapError(
            f"model {card.name}: expected input size {list(card.input_size)} (its card), "
            f"got {list(info.input_size)} from the model"
        )
    if dict(info.names) != card.classes:
        raise ModelSwapError(
            f"model {card.name}: expected the {len(card.classes)} classes its card declares "
            f"({_preview(card.classes)}), got {len(info.names)} from the model "
            f"({_preview(info.names)})"
        )
    wanted = {name for camera in config.cameras for name in camera.filters.classes}
    missing = sorted(wanted - set(info.names.values()))
    if missing:
        raise ModelSwapError(
            f"model {card.name}: expected the classes the camera filters name {missing}, "
            f"got a model without them"
        )


def warm_up(detector: DetectorBackend) -> None:
    """Run one blank frame of the model's input size; it must give one list of detections.

    Raises:
        ModelSwapError: The runtime fails, or the answer has the wrong shape.

    """
    height, width = detector.info.input_size
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    try:
        batch = detector.detect([frame])
    except Exception as err:  # the runtime's own errors too: any failure rejects the model
        raise ModelSwapError(f"expected the warm-up frame to run, got {err!r}") from err
    if len(batch.detections) != 1:
        raise ModelSwapError(
            f"expected detections for 1 warm-up frame, got {len(batch.detections)} lists"
        )


def _preview(names: dict[int, str]) -> str:
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(names.items())[:4])
    return shown + (", ..." if len(names) > 4 else "")
