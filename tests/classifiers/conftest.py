"""Fixtures of the classifier tests: the real EfficientNet-Lite0 export with a features output."""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.models.export.classifier import export_timm_classifier
from tests.conftest import fetch


@pytest.fixture(scope="session")
def effnet_features_onnx(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet EfficientNet-Lite0 (real weights, fetched by manifest) exported to ONNX with
    ``logits`` and ``features`` outputs, once per session."""
    weights = fetch("efficientnet-lite0", model_cache)
    folder = tmp_path_factory.mktemp("effnet-features")
    return export_timm_classifier(weights, arch="efficientnet_lite0", out_dir=folder, features=True)
