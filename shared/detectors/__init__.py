"""Object detectors: one interface, one pre/post-processing, one module per runtime.

The backend classes are imported on first use (``from lensflow.shared.detectors import
OpenVinoDetector``), so importing this package never imports onnxruntime or openvino.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lensflow.shared.detectors.base import (
    Detection,
    DetectionBatch,
    DetectorBackend,
    ModelInfo,
    StageTimes,
)
from lensflow.shared.detectors.factory import load_detector
from lensflow.shared.detectors.metadata import (
    YoloMetadata,
    parse_yolo_metadata,
    read_openvino_metadata,
)
from lensflow.shared.detectors.postprocess import DecodeSettings, class_aware_nms, decode_yolo, nms
from lensflow.shared.detectors.preprocess import (
    Letterbox,
    PreparedBatch,
    letterbox_geometry,
    preprocess,
)

if TYPE_CHECKING:
    from lensflow.shared.detectors.onnxruntime import OnnxRuntimeDetector
    from lensflow.shared.detectors.openvino import OpenVinoDetector
    from lensflow.shared.detectors.ssd_openvino import SsdOpenVinoDetector

_LAZY = {
    "OnnxRuntimeDetector": "lensflow.shared.detectors.onnxruntime",
    "OpenVinoDetector": "lensflow.shared.detectors.openvino",
    "SsdOpenVinoDetector": "lensflow.shared.detectors.ssd_openvino",
}

__all__ = [
    "DecodeSettings",
    "Detection",
    "DetectionBatch",
    "DetectorBackend",
    "Letterbox",
    "ModelInfo",
    "OnnxRuntimeDetector",
    "OpenVinoDetector",
    "PreparedBatch",
    "SsdOpenVinoDetector",
    "StageTimes",
    "YoloMetadata",
    "class_aware_nms",
    "decode_yolo",
    "letterbox_geometry",
    "load_detector",
    "nms",
    "parse_yolo_metadata",
    "preprocess",
    "read_openvino_metadata",
]


def __getattr__(name: str) -> Any:
    """Import a backend class on first access (its runtime is an optional extra)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
