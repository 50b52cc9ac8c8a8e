"""Shared fixtures: the repository root, sample images, a registry with test plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.models.export.fetch import fetch_model
from lensflow.models.export.manifest import load_manifest
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.images import read_image, sample_image_paths
from tests.support.plugins import make_registry

ROOT = Path(__file__).resolve().parent.parent

# property tests are deterministic in `make test`; `make fuzz` randomizes them
pytest_plugins = ["tests.support.hypothesis_profiles"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def sample_images() -> dict[str, Image]:
    """Real photos shipped in the ultralytics wheel, by file stem (bus, zidane)."""
    return {path.stem: read_image(path) for path in sample_image_paths()}


@pytest.fixture
def registry() -> PluginRegistry:
    return make_registry()


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Where tests keep fetched model files: the project's git-ignored cache, reused across runs."""
    return ROOT / "var" / "models"


def fetch(name: str, cache: Path) -> Path:
    manifest = ROOT / "configs" / "models.yaml"
    return fetch_model(
        load_manifest(manifest).entry(name), cache_dir=cache, manifest_dir=manifest.parent
    )


@pytest.fixture(scope="session")
def yolov8s_person_pt(model_cache: Path) -> Path:
    """The real YOLOv8s person weights, fetched by manifest (sha256-checked)."""
    return fetch("yolov8s-person", model_cache)


@pytest.fixture(scope="session")
def person_onnx(yolov8s_person_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real person detector as ONNX (FP32, 640), exported once per session."""
    from lensflow.models.export.exporter import ultralytics_export

    workdir = tmp_path_factory.mktemp("onnx")
    return ultralytics_export(yolov8s_person_pt, fmt="onnx", imgsz=640, half=False, workdir=workdir)


@pytest.fixture(scope="session")
def ssdlite_person_pb(model_cache: Path) -> Path:
    """The real SSDLite-MobileNetV2 person detector (TensorFlow frozen graph)."""
    return fetch("ssdlite-person", model_cache)


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small calibration set: varied views of the real sample photos."""
    from lensflow.models.export.calibration import make_calibration_set

    folder = tmp_path_factory.mktemp("calib")
    make_calibration_set(sample_image_paths(), folder, count=16)
    return folder


@pytest.fixture(scope="session")
def ssd_coco_tflite(model_cache: Path) -> Path:
    """Coral's SSD MobileNetV2 COCO (uint8 TFLite with its post-process op) and its labels."""
    return fetch("ssd-mobilenet-v2-coco", model_cache)


@pytest.fixture(scope="session")
def coco_photos(model_cache: Path) -> dict[str, Path]:
    """Real photos of COCO objects by file stem: darknet's (dog, person, horses, kite, giraffe,
    eagle) and the ultralytics wheel's (bus, zidane)."""
    from lensflow.models.export.samples import fetch_samples

    found = fetch_samples(manifest=ROOT / "configs" / "models.yaml", cache_dir=model_cache)
    return {path.stem: path for path in [*found, *sample_image_paths()]}


@pytest.fixture(scope="session")
def effnet_features_onnx(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet EfficientNet-Lite0 (real weights, fetched by manifest) exported to ONNX with
    ``logits`` and ``features`` outputs, once per session."""
    from lensflow.models.export.classifier import export_timm_classifier

    weights = fetch("efficientnet-lite0", model_cache)
    folder = tmp_path_factory.mktemp("effnet-features")
    return export_timm_classifier(weights, arch="efficientnet_lite0", out_dir=folder, features=True)
