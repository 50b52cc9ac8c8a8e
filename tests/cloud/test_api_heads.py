"""Specs of ``POST /v1/heads``: reviewed labels in, a gated head and a candidate version out.

Crops are stored with a (seeded, synthetic) embedding per crop; an operator starts the schema
of a node the pipeline does not have and labels crops through the API, as the desktop does.
The candidate version must compile on a worker (the head loaded from the database) and label
crops as the head predicts. The real-embedding gate is tests/classifiers/test_heads_real.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from lensflow.cloud.heads.store import DbHeadStore
from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models import PipelineVersion
from lensflow.cloud.worker.versions import PipelineText, compile_text, digest
from tests.support.api import ApiHarness, running_api, seed
from tests.support.plugins import make_registry

MODEL = "embeddings-v1/test@sha256:0123456789abcdef"
BASE = {
    "version": 1,
    "name": "heads-test",
    "pipeline": [
        {"name": "object_detection", "class": "edge_detection"},
        {"name": "embedding", "class": "echo", "depends_on": "object_detection"},
    ],
}
KINDS = ("person", "animal", "thing")


def vector_of(kind: int, rng: np.random.Generator) -> list[float]:
    centre = np.zeros(32)
    centre[kind * 8 : kind * 8 + 8] = 1.0
    v = centre + 0.5 * rng.normal(size=32)
    return [float(x) for x in v / np.linalg.norm(v)]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path) as harness:
        text = yaml.safe_dump(BASE, sort_keys=False)
        with session_factory(harness.engine)() as session:
            session.add(
                PipelineVersion(
                    name="heads-test",
                    yaml_text=text,
                    sha256=digest(text),
                    created_by="w",
                    active=True,
                )
            )
            session.commit()
        yield harness


def seed_labelled(api: ApiHarness, *, per_kind: int, shuffle: bool = False) -> list[str]:
    """Crops with vectors by kind; labelled through the API (shuffled: labels say nothing)."""
    rng = np.random.default_rng(3)
    for name in KINDS:
        assert (
            api.post(
                "/v1/label-schemas/kind/labels", who="operator", json={"name": name}
            ).status_code
            == 201
        )
    kinds = [k for k in range(len(KINDS)) for _ in range(per_kind)]
    labels = list(kinds)
    if shuffle:
        rng.shuffle(labels)
    ids = []
    for i, kind in enumerate(kinds):
        crop_id = f"crop-{i:04d}"
        ids.append(crop_id)
        vector = {"vector": vector_of(kind, rng), "dim": 32, "model": MODEL}
        seed(api, crop_id, outputs={"embedding": vector})
    for kind_index in range(len(KINDS)):
        chosen = [c for c, k in zip(ids, labels, strict=True) if k == kind_index]
        body = {"crop_ids": chosen, "node": "kind", "label": KINDS[kind_index]}
        answer = api.post("/v1/labels", who="operator", json=body)
        assert answer.status_code == 200, answer.text
    return ids


def test_a_head_is_trained_gated_stored_and_proposed_as_a_candidate(api: ApiHarness) -> None:
    seed_labelled(api, per_kind=40)

    answer = api.post("/v1/heads", who="operator", json={"node": "kind"})

    assert answer.status_code == 201, answer.text
    head = answer.json()
    assert head["classes"] == list(KINDS), "class ids follow the label schema"
    card = head["card"]
    assert card["labels_from"] == {"relabelled": 120}
    assert card["heldout"]["accuracy"] > 0.9 and card["gate"]["passed"]
    assert card["gate"]["baseline"].startswith("majority class")
    assert sum(card["train_counts"].values()) + card["heldout"]["n"] == 120
    listed = api.get("/v1/heads?node=kind", who="viewer").json()
    assert [h["sha256"] for h in listed] == [head["sha256"]]

    # the candidate is stored, not active, and runs the head on a worker
    candidate = api.get(f"/v1/pipelines/{head['candidate']['id']}", who="viewer").json()
    assert not candidate["active"]
    node = yaml.safe_load(candidate["yaml"])["pipeline"][-1]
    assert node == {
        "name": "kind",
        "class": "embedding_head",
        "depends_on": ["embedding"],
        "params": {"head": head["sha256"], "embedding": "embedding"},
    }
    text = PipelineText("heads-test", candidate["yaml"], candidate["sha256"], candidate["id"], "c")
    registry = make_registry().with_heads(DbHeadStore(api.engine))
    pipeline = compile_text(text, registry=registry)
    rng = np.random.default_rng(99)
    results = pipeline.run_batch(
        [np.zeros((8, 8, 3), dtype=np.uint8)] * 3,
        inputs=[{"detection": {"class_name": "x"}}] * 3,
    )
    assert all(r.nodes["kind"].status in ("ok", "error") for r in results)
    plugin = pipeline.plugins["kind"]
    outputs = plugin.process_batch(
        [np.zeros((1, 1, 3), np.uint8)] * 3,
        [{"embedding": {"vector": vector_of(k, rng), "model": MODEL}} for k in range(3)],
    )
    assert [o["label"] for o in outputs] == list(KINDS)


def test_a_head_on_shuffled_labels_is_refused_with_the_numbers(api: ApiHarness) -> None:
    seed_labelled(api, per_kind=40, shuffle=True)

    answer = api.post("/v1/heads", who="operator", json={"node": "kind"})

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "head_refused"
    assert "beyond chance" in error["message"] and "held-out" in error["message"]
    assert api.get("/v1/heads", who="viewer").json() == [], "a refused head is not stored"


def test_too_few_labels_per_class_is_refused_with_the_counts(api: ApiHarness) -> None:
    seed_labelled(api, per_kind=4)

    answer = api.post("/v1/heads", who="operator", json={"node": "kind", "min_per_class": 5})

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "too_few_labels"
    assert "at least 5 training labels per class: 'person' has" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"node": "kind", "kind": "svm"}, 422),  # no such head kind
        ({"node": "kind", "heldout_fraction": 0.9}, 422),  # would hold out most crops
        ({"node": "kind", "labels": []}, 422),  # learn nothing: too few labels
        ({"node": "no labels here"}, 422),  # not a node name
    ],
)
def test_bad_requests_say_what_was_expected(
    api: ApiHarness, body: dict[str, Any], status: int
) -> None:
    seed_labelled(api, per_kind=6)

    answer = api.post("/v1/heads", who="operator", json=body)

    assert answer.status_code == status, answer.text


def test_a_viewer_cannot_train_a_head(api: ApiHarness) -> None:
    assert api.post("/v1/heads", who="viewer", json={"node": "kind"}).status_code == 403
