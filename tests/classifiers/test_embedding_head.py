"""Specs of trained heads: the file format, numpy prediction equal to scikit-learn's, the plugin.

Vectors here are seeded synthetic clusters (the real-embedding test is
tests/cloud/test_heads_real.py); what is checked is that a head file round-trips byte for
byte, predicts exactly as the scikit-learn model it was made from, refuses tampered or
malformed files, and that the ``embedding_head`` node loads from the injected store and says
what is wrong when it cannot.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from lensflow.shared.classifiers.base import BaseClassifier
from lensflow.shared.classifiers.embedding_head import EmbeddingHead
from lensflow.shared.classifiers.head_model import HeadModel
from lensflow.shared.classifiers.head_store import MemoryHeadStore
from lensflow.shared.classifiers.registry import default_registry
from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.dag.compiler import compile_pipeline
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.errors import ConfigError, ModelError

MODEL = "embeddings-v1/test@sha256:0000000000000000"


def clusters(n_classes: int, per_class: int, dim: int = 16, seed: int = 0) -> tuple[Any, Any]:
    """Unit vectors around ``n_classes`` random centres, and their class ids."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    x = np.concatenate([c + 0.6 * rng.normal(size=(per_class, dim)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), per_class)
    return x.astype(np.float32), y


def logistic_head(x: Any, y: Any, classes: tuple[str, ...]) -> tuple[HeadModel, Any]:
    model = LogisticRegression(max_iter=5000).fit(x.astype(np.float64), y)
    arrays = {"coef": model.coef_, "intercept": model.intercept_}
    head = HeadModel("logistic", classes, MODEL, x.shape[1], arrays, card={"node": "kind"})
    return head, model


@pytest.mark.parametrize("n_classes", [2, 4])  # binary heads have one coef row, as sklearn's
def test_a_logistic_head_predicts_what_scikit_learn_predicts(n_classes: int) -> None:
    x, y = clusters(n_classes, 30)
    classes = tuple(f"c{i}" for i in range(n_classes))
    head, model = logistic_head(x, y, classes)
    query, _ = clusters(n_classes, 10, seed=1)

    np.testing.assert_allclose(
        head.predict_proba(query), model.predict_proba(query.astype(np.float64)), atol=1e-9
    )
    assert head.predict(query) == [classes[i] for i in model.predict(query.astype(np.float64))]


def test_a_knn_head_votes_as_scikit_learn_cosine_neighbours() -> None:
    x, y = clusters(3, 20)
    head = HeadModel(
        "knn",
        ("a", "b", "c"),
        MODEL,
        x.shape[1],
        {"vectors": x, "targets": y.astype(np.int32)},
        k=5,
    )
    model = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute").fit(x, y)
    query, _ = clusters(3, 10, seed=2)

    np.testing.assert_allclose(head.predict_proba(query), model.predict_proba(query), atol=1e-9)


def test_a_head_file_round_trips_byte_for_byte_and_is_named_by_its_digest() -> None:
    x, y = clusters(3, 10)
    head, _ = logistic_head(x, y, ("a", "b", "c"))
    data = head.to_bytes()

    again = HeadModel.from_bytes(data, sha256=hashlib.sha256(data).hexdigest())

    assert again.to_bytes() == data
    assert again.sha256 == head.sha256 == hashlib.sha256(data).hexdigest()
    assert again.classes == ("a", "b", "c") and again.card == {"node": "kind"}


def tampered(data: bytes, change: Any) -> bytes:
    doc = json.loads(data)
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(format="pickle"), "expected a head of format 'lensflow-head/1'"),
        (lambda d: d.update(kind="svm"), "expected a head kind among logistic, knn"),
        (lambda d: d.update(classes=["a", "a", "b"]), "at least two distinct classes"),
        (lambda d: d.update(dim=17), "expected coef of shape (1, 17), got (1, 16)"),  # width
        (lambda d: d["arrays"]["coef"].update(dtype="|O"), "with a dtype among"),  # no objects
        (lambda d: d["arrays"]["coef"].update(data="AAAA"), "bytes"),  # truncated data
        (lambda d: d.pop("embedding_model"), "expected a complete lensflow-head/1 document"),
    ],
)
def test_a_malformed_head_file_is_refused_saying_what_was_expected(
    change: Any, expected: str
) -> None:
    x, y = clusters(3, 10)
    head, _ = logistic_head(x[y < 2], y[y < 2], ("a", "b"))

    with pytest.raises(ModelError, match=re.escape(expected)):
        HeadModel.from_bytes(tampered(head.to_bytes(), change))


def test_a_head_fetched_by_digest_must_have_that_digest() -> None:
    x, y = clusters(2, 10)
    head, _ = logistic_head(x, y, ("a", "b"))

    with pytest.raises(ModelError, match=f"expected a head with sha256 {'0' * 64}"):
        HeadModel.from_bytes(head.to_bytes(), sha256="0" * 64)
    with pytest.raises(ModelError, match="expected a lensflow-head/1 JSON document"):
        HeadModel.from_bytes(b"\x80\x04pickle")


PIPELINE = """\
version: 1
name: taught
pipeline:
  - name: embedding
    class: vectors
  - name: kind
    class: embedding_head
    depends_on: embedding
    params: {{head: {head}}}
"""


class Vectors(BaseClassifier):
    """A fake embedding node: the image's first pixel row as the vector (behaves, no model)."""

    key = "vectors"
    outputs = ("vector", "dim", "model")

    def process(self, image: Any, context: Any) -> dict[str, Any]:
        vector = image[0, :16, 0].astype(np.float64) / 255.0
        return {"vector": vector.tolist(), "dim": 16, "model": MODEL}


def compiled(head_sha: str, store: MemoryHeadStore | None) -> Any:
    registry = default_registry().with_heads(store).with_models(None)
    registry = type(registry)(
        {**registry.plugins, "vectors": Vectors}, dict(registry.unavailable), None, store
    )
    doc = YamlDocument(PIPELINE.format(head=head_sha), path="taught.yaml")
    return compile_pipeline(load_model(PipelineConfig, doc), registry=registry, doc=doc)


def test_the_head_node_labels_crops_from_the_upstream_vector() -> None:
    x, y = clusters(2, 40)
    head, model = logistic_head(x, y, ("cat", "dog"))
    store = MemoryHeadStore()
    digest = store.add(head.to_bytes())
    images = [np.zeros((4, 16, 3), dtype=np.uint8) for _ in range(3)]
    for image, vector in zip(images, x[[0, 45, 79]], strict=True):  # the row carries the vector
        image[0, :, 0] = np.clip(vector * 255, 0, 255).astype(np.uint8)

    results = Pipeline(compiled(digest, store)).run_batch(images)

    for image, result in zip(images, results, strict=True):
        out = result.nodes["kind"]
        assert out.status == "ok", out.reason
        vector = image[0, :16, 0].astype(np.float64)[None] / 255.0
        assert out.output["label"] == ("cat", "dog")[int(model.predict(vector)[0])]
        assert out.output["head"] == digest[:12]
        assert out.output["top_k"][0]["label"] == out.output["label"]


def test_a_head_missing_from_the_store_fails_the_load_at_its_line() -> None:
    with pytest.raises(ConfigError) as err:
        compiled("a" * 64, MemoryHeadStore())

    assert "taught.yaml:9" in str(err.value)
    assert f"expected a stored head with sha256 {'a' * 64}, found none" in str(err.value)


def test_without_a_head_store_the_digest_is_checked_for_form_only() -> None:
    compiled("b" * 64, None)  # the API's validate route: valid form, not loaded

    with pytest.raises(ConfigError, match="should match pattern"):
        compiled("not-a-digest", None)


def test_vectors_of_another_embedding_model_are_refused_with_both_names() -> None:
    x, y = clusters(2, 10)
    head, _ = logistic_head(x, y, ("cat", "dog"))
    plugin = EmbeddingHead.__new__(EmbeddingHead)
    plugin.head = head
    plugin.params = EmbeddingHead.Params(head="c" * 64)
    context = {"embedding": {"vector": x[0].tolist(), "model": "embeddings-v1/other"}}

    with pytest.raises(ModelError, match="expected vectors of .*test.* got vectors of .*other"):
        plugin.process(np.zeros((4, 4, 3), dtype=np.uint8), context)
    with pytest.raises(ModelError, match="expected upstream node 'embedding' to give a 'vector'"):
        plugin.process(np.zeros((4, 4, 3), dtype=np.uint8), {})
