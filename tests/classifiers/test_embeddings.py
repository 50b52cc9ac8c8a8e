"""The embeddings plugin: L2-normalised EfficientNet-Lite0 pooled features (real weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lensflow.models.export.fetch import sha256_file
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.embeddings import Embeddings, EmbeddingsParams
from lensflow.shared.classifiers.registry import PluginRegistry
from tests.conftest import fetch
from tests.support.plugins import with_store

pytestmark = pytest.mark.integration

DIM = 1280


@pytest.fixture(scope="module")
def plugin(effnet_features_onnx: Path) -> Embeddings:
    return Embeddings(EmbeddingsParams(model=str(effnet_features_onnx)))


@pytest.fixture(scope="module")
def crops(sample_images: dict[str, Image]) -> dict[str, Image]:
    bus, zidane = sample_images["bus"], sample_images["zidane"]
    return {
        "bus": bus[230:768, 17:801],
        "bus again": bus[250:760, 60:780],  # the same bus, boxed a little differently
        "zidane": zidane[48:720, 743:1141],
        "zidane again": zidane[80:700, 760:1120],  # the same man, boxed a little differently
        "man": bus[398:902, 48:245],
        "tie": zidane[437:714, 437:524],
        "street": bus[:200, :300],
    }


def vector(plugin: Embeddings, image: Image) -> np.ndarray:
    return np.array(plugin.process(image, {})["vector"])


def test_vectors_are_unit_length_1280_d_and_name_their_model(
    plugin: Embeddings, effnet_features_onnx: Path, crops: dict[str, Image]
) -> None:
    for result in plugin.process_batch(list(crops.values()), [{}] * len(crops)):
        assert set(result) == {"vector", "dim", "model"}
        assert result["dim"] == DIM == len(result["vector"])
        assert all(isinstance(x, float) for x in result["vector"])
        assert np.linalg.norm(result["vector"]) == pytest.approx(1.0, abs=1e-5)
        sha = sha256_file(effnet_features_onnx)[:16]
        assert (
            result["model"]
            == f"embeddings-v1/{effnet_features_onnx.parent.name}/model.onnx@sha256:{sha}"
        )


def test_a_batch_gives_what_one_by_one_gives(plugin: Embeddings, crops: dict[str, Image]) -> None:
    images = list(crops.values())
    batched = plugin.embed(images)
    singles = np.stack([vector(plugin, image) for image in images])
    assert batched.shape == (len(images), DIM)
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_the_same_thing_is_nearer_than_other_things(
    plugin: Embeddings, crops: dict[str, Image]
) -> None:
    vectors = {name: vector(plugin, image) for name, image in crops.items()}
    for name in ("bus", "zidane"):
        same = float(vectors[name] @ vectors[f"{name} again"])
        others = {
            other: float(vectors[name] @ vec)
            for other, vec in vectors.items()
            if not other.startswith(name)
        }
        assert same > max(others.values()) + 0.05, (name, same, others)


def test_embeddings_are_deterministic(
    plugin: Embeddings, effnet_features_onnx: Path, crops: dict[str, Image]
) -> None:
    again = Embeddings(EmbeddingsParams(model=str(effnet_features_onnx)))
    for image in crops.values():
        first = plugin.process(image, {})
        assert plugin.process(image, {}) == first
        assert again.process(image, {}) == first


def test_the_default_model_is_exported_on_first_load(
    repo_root: Path,
    model_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sample_images: dict[str, Image],
) -> None:
    # given a model cache holding only the fetched weights (no export yet)
    weights = fetch("efficientnet-lite0", model_cache)
    (tmp_path / "efficientnet-lite0").mkdir()
    shutil.copy(weights, tmp_path / "efficientnet-lite0" / weights.name)
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(tmp_path))
    manifest = str(repo_root / "configs" / "models.yaml")
    # when the plugin is created with the default model
    plugin = Embeddings(with_store(EmbeddingsParams, manifest=manifest))
    # then it exported the model into the cache, where the next load finds it
    expected = tmp_path / "efficientnet-lite0" / "export" / "onnx-fp32-features" / "model.onnx"
    assert plugin.model_path == expected and expected.is_file()
    assert plugin.model_id.startswith("embeddings-v1/efficientnet-lite0@sha256:")
    again = Embeddings(with_store(EmbeddingsParams, manifest=manifest))
    assert again.model_id == plugin.model_id
    assert again.process(sample_images["bus"], {})["dim"] == DIM


def test_discovery_registers_it() -> None:
    assert PluginRegistry().discover().resolve("embeddings") is Embeddings
