"""Pick and load a detector backend for a model file.

The runtime modules are imported only here, on demand: ``onnxruntime`` and ``openvino`` are
optional extras, and a missing one becomes a :class:`~lensflow.shared.errors.ModelError` naming the
extra to install, not an ImportError at start-up.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lensflow.shared.detectors.base import DetectorBackend
from lensflow.shared.errors import ModelError

if TYPE_CHECKING:
    from lensflow.shared.config.edge import DetectorConfig

logger = logging.getLogger(__name__)

Backend = Literal["auto", "onnxruntime", "openvino", "litert"]
Family = Literal["auto", "yolo", "ssd", "ssd-tflite"]

# (backend, family) -> (module, class) of the implementation.
IMPLEMENTATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("onnxruntime", "yolo"): ("lensflow.shared.detectors.onnxruntime", "OnnxRuntimeDetector"),
    ("openvino", "yolo"): ("lensflow.shared.detectors.openvino", "OpenVinoDetector"),
    ("openvino", "ssd"): ("lensflow.shared.detectors.ssd_openvino", "SsdOpenVinoDetector"),
    ("litert", "ssd-tflite"): ("lensflow.shared.detectors.litert", "LiteRtDetector"),
    ("openvino", "ssd-tflite"): (
        "lensflow.shared.detectors.ssd_tflite_openvino",
        "SsdTfliteOpenVinoDetector",
    ),
}
# The runtime package each backend imports -> the pip extra that installs it.
EXTRAS = {
    "onnxruntime": "lensflow[cpu]",
    "openvino": "lensflow[edge]",
    "ai_edge_litert": "lensflow[edge]",
}


def load_detector(
    path: str | Path,
    *,
    backend: Backend = "auto",
    family: Family = "auto",
    device: str = "CPU",
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    precision_hint: str | None = "f32",
    threads: int | None = None,
    parallel: int = 1,
) -> DetectorBackend:
    """Load a detection model in the runtime that fits it.

    By suffix: ``.onnx`` → YOLO on ONNX Runtime (OpenVINO when asked); ``.xml`` or a folder
    holding one → YOLO on OpenVINO; ``.pb`` → SSD on OpenVINO; ``.tflite`` → a TFLite SSD on
    LiteRT (on OpenVINO when asked, its post-process op cut off and decoded by lensflow).

    Args:
        path: the model file or folder.
        backend: the runtime; "auto" picks it from the suffix.
        family: the model family; "auto" picks it from the suffix.
        device: "CPU", "CUDA", "TensorRT" (onnxruntime) or an OpenVINO device name.
        conf: minimum score kept.
        iou: NMS IoU threshold (YOLO).
        max_det: most detections per frame.
        precision_hint: OpenVINO's ``INFERENCE_PRECISION_HINT`` (ignored by onnxruntime).
        threads: inference threads; the runtime's default when None.
        parallel: how many threads will call ``detect`` at once (the edge agent's detector
            service): above 1, OpenVINO YOLO compiles with the THROUGHPUT hint (that many
            infer requests), LiteRT keeps that many interpreters and ONNX Runtime runs that many
            calls on its session at once.

    Returns:
        The loaded detector.

    Raises:
        ModelError: missing / bad model, an impossible backend-family pair, or the runtime
            is not installed.
        DetectorError: the device is not available.
    """
    model = Path(path)
    if not model.exists():
        raise ModelError(
            f"{model}: model not found; expected a .onnx, .xml, .pb, .tflite or a folder"
        )
    chosen_family = _family(model) if family == "auto" else family
    chosen_backend = _backend(model, chosen_family) if backend == "auto" else backend
    key = (chosen_backend, chosen_family)
    if key not in IMPLEMENTATIONS:
        raise ModelError(
            f"{model}: no {chosen_family} detector for backend {chosen_backend!r}; "
            f"expected one of {sorted(IMPLEMENTATIONS)}"
        )
    cls = _import(*IMPLEMENTATIONS[key], backend=chosen_backend)
    options: dict[str, Any] = {
        "device": device,
        "conf": conf,
        "max_det": max_det,
        "threads": threads,
    }
    if chosen_family == "yolo":
        options["iou"] = iou
    if chosen_backend == "openvino":
        options["precision_hint"] = precision_hint
        if parallel > 1 and chosen_family == "yolo":  # the one with an async path (submit)
            options["performance_hint"] = "THROUGHPUT"
            options["requests"] = parallel
    if chosen_backend == "litert" and parallel > 1:
        options["interpreters"] = parallel
    if chosen_backend == "onnxruntime" and parallel > 1:
        options["parallel"] = parallel
    logger.info("loading %s as %s on %s (%s)", model, chosen_family, chosen_backend, device)
    detector: DetectorBackend = cls(model, **options)
    return detector


def load_configured_detector(
    config: DetectorConfig, *, parallel: int = 1
) -> tuple[DetectorBackend, str]:
    """Load the detector a config names (an artifact path), with the sha256 of its model file.

    The edge agent and the cloud's HTTP ingest both load their detector this way; the digest
    goes into every crop's provenance. ``parallel``: see :func:`load_detector`.

    Raises:
        ModelError: If the model is missing, corrupt or its runtime is not installed.
        DetectorError: If the device is not available.

    """
    detector = load_detector(
        config.model,
        backend=config.backend,
        device=config.device,
        conf=config.conf_threshold,
        iou=config.iou_threshold,
        parallel=parallel,
    )
    digest = hashlib.sha256()
    with Path(detector.info.path).open("rb") as model:
        for chunk in iter(lambda: model.read(1 << 20), b""):
            digest.update(chunk)
    return detector, digest.hexdigest()


def _family(model: Path) -> str:
    """The family for a suffix: a TensorFlow frozen graph or a TFLite SSD, else YOLO."""
    return {".pb": "ssd", ".tflite": "ssd-tflite"}.get(model.suffix, "yolo")


def _backend(model: Path, family: str) -> str:
    """The runtime for a family and suffix: LiteRT for TFLite, ONNX Runtime for .onnx."""
    if family == "ssd-tflite":
        return "litert"
    if family == "yolo" and model.suffix == ".onnx":
        return "onnxruntime"
    return "openvino"


def _import(module: str, name: str, *, backend: str) -> Any:
    """Import a backend class; a missing runtime becomes a ModelError naming the extra."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as err:
        package = (err.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        raise ModelError(
            f"the {backend} backend needs the {package!r} package, which is not installed "
            f"or broken ({err}): pip install '{EXTRAS[package]}'"
        ) from err
