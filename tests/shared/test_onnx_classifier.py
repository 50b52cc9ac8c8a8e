"""The ``onnx_classifier`` plugin on the real EfficientNet-Lite0, exported with a dynamic batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lensflow.models.export.classifier import export_timm_classifier
from lensflow.models.export.fetch import fetch_model
from lensflow.models.export.manifest import load_manifest
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.onnx_classifier import OnnxClassifier, OnnxClassifierParams
from lensflow.shared.classifiers.registry import PluginRegistry

pytestmark = pytest.mark.integration

# ImageNet classes a bus photo may fairly be: minibus, school bus, trolleybus
BUS_CLASSES = {654, 779, 874}


@pytest.fixture(scope="module")
def effnet_onnx(
    repo_root: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    manifest = repo_root / "configs" / "models.yaml"
    weights = fetch_model(
        load_manifest(manifest).entry("efficientnet-lite0"),
        cache_dir=model_cache,
        manifest_dir=manifest.parent,
    )
    folder = tmp_path_factory.mktemp("effnet")
    return export_timm_classifier(weights, arch="efficientnet_lite0", out_dir=folder)


@pytest.fixture(scope="module")
def classifier(effnet_onnx: Path) -> OnnxClassifier:
    return OnnxClassifier(OnnxClassifierParams(model=str(effnet_onnx)))


@pytest.fixture
def crops(sample_images: dict[str, Image]) -> list[Image]:
    bus, zidane = sample_images["bus"], sample_images["zidane"]
    return [bus, zidane, bus[100:400, 50:300], zidane[200:600, 600:900]]


def test_a_batch_gives_what_one_by_one_gives(
    classifier: OnnxClassifier, crops: list[Image]
) -> None:
    # given four images of different sizes
    # when they are classified in one batch and one at a time
    batched = classifier.process_batch(crops, [{} for _ in crops])
    singles = [classifier.process(image, {}) for image in crops]
    # then every image gets the same class and (within float noise) the same score
    assert [out["class_id"] for out in batched] == [out["class_id"] for out in singles]
    for got, want in zip(batched, singles, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_the_bus_photo_is_a_bus(
    classifier: OnnxClassifier, sample_images: dict[str, Image]
) -> None:
    output = classifier.process(sample_images["bus"], {})
    assert output["class_id"] in BUS_CLASSES
    assert output["label"] == f"class_{output['class_id']}"
    assert 0.0 < output["score"] <= 1.0


def test_labels_name_the_classes(effnet_onnx: Path, sample_images: dict[str, Image]) -> None:
    names = [f"imagenet-{index}" for index in range(1000)]
    plugin = OnnxClassifier(OnnxClassifierParams(model=str(effnet_onnx), labels=names))
    output = plugin.process(sample_images["bus"], {})
    assert output["label"] == f"imagenet-{output['class_id']}"


def test_a_missing_model_fails_when_the_params_are_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model must be an existing .onnx file"):
        OnnxClassifierParams(model=str(tmp_path / "missing.onnx"))


def test_discovery_registers_it() -> None:
    assert PluginRegistry().discover().resolve("onnx_classifier") is OnnxClassifier
