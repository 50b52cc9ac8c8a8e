"""API specs: relabelling a crop and its look-alikes is previewed, skips human reviews unless
asked, is applied as one undoable batch, and only as previewed.

The look-alikes come from the image search over stored embeddings (an exact index of 3-d
vectors whose cosine similarities to the query crop are known). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lensflow.shared.config.search import ExactIndexConfig, SearchConfig
from tests.support.api import T0, ApiHarness, labelled_pipeline, running_api, seed

SCHEMAS = {"detection": ["car", "truck", "bus"], "color": ["red", "blue"]}
# crop id -> cosine similarity to "s" (the query), most similar first; "far" is unlike it
SIMILARITY = {
    "s": 1.0, "n1": 0.99, "n2": 0.95, "bus1": 0.93, "n3": 0.90, "u": 0.88, "n4": 0.85, "far": 0.0,
}  # fmt: skip


def vector(similarity: float) -> list[float]:
    """A unit vector at cosine ``similarity`` to [1, 0, 0]."""
    return [similarity, math.sqrt(1 - similarity**2), 0.0]


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    search = SearchConfig(index=ExactIndexConfig(dim=3, path=tmp_path / "index"), node="emb")
    pipeline = labelled_pipeline(tmp_path, SCHEMAS)
    with running_api(db_url, tmp_path, search=search, pipeline=pipeline) as harness:
        for minute, (crop_id, similarity) in enumerate(SIMILARITY.items()):
            outputs: dict[str, Any] = {"emb": {"vector": vector(similarity)}}
            if crop_id in ("s", "n1"):
                outputs["color"] = {"color": "blue"}
            seed(harness, crop_id, at=T0 + timedelta(minutes=minute), outputs=outputs)
        seed(harness, "bare", outputs={})  # no embedding
        post(harness, "/v1/labels", {"crop_ids": ["bus1"], "label": "bus"})  # a human said bus
        post(harness, "/v1/labels", {"crop_ids": ["n3"], "label": "truck"})  # ... and truck
        post(harness, "/v1/reviews", {"crop_ids": ["n4"], "status": "accepted"})  # car is right
        post(harness, "/v1/reviews", {"crop_ids": ["u"], "status": "unsure"})  # decides nothing
        yield harness


def post(api: ApiHarness, url: str, body: dict[str, Any], *, who: str = "operator") -> Any:
    response = api.post(url, who=who, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def preview(api: ApiHarness, **overrides: Any) -> Any:
    body = {"crop_id": "s", "label": "bus", "k": 10, "min_similarity": 0.8} | overrides
    return api.post("/v1/labels/similar/preview", who="operator", json=body)


def apply(api: ApiHarness, expect: list[str], **overrides: Any) -> Any:
    body = {"crop_id": "s", "label": "bus", "k": 10, "min_similarity": 0.8} | overrides
    return api.post("/v1/labels/similar", who="operator", json=body | {"expect": expect})


def labels(api: ApiHarness) -> dict[str, str | None]:
    items = api.get("/v1/results", params={"limit": 100}).json()["items"]
    return {item["crop_id"]: item["human_labels"].get("detection") for item in items}


def history_length(api: ApiHarness) -> int:
    items = [api.get(f"/v1/results/{crop_id}").json() for crop_id in SIMILARITY]
    return sum(len(item["history"]) for item in items)


def test_a_preview_groups_what_would_change_and_skips_human_reviews(api: ApiHarness) -> None:
    written = history_length(api)

    response = preview(api)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["groups"] == [
        {"current": "car", "status": None, "human": False, "crop_ids": ["s", "n1", "n2"]},
        {"current": "car", "status": "unsure", "human": False, "crop_ids": ["u"]},
    ]  # the query crop itself first; "far" is below the threshold
    assert body["crop_ids"] == ["s", "n1", "n2", "u"]
    assert (body["skipped_human"], body["unchanged"], body["not_run"]) == (2, 1, 0)
    assert (body["node"], body["label"], body["threshold"]) == ("detection", "bus", 0.8)
    assert history_length(api) == written  # a preview writes nothing


def test_include_human_previews_the_human_reviews_too_grouped_by_their_label(
    api: ApiHarness,
) -> None:
    body = preview(api, include_human=True).json()

    assert [(g["current"], g["status"], g["human"], g["crop_ids"]) for g in body["groups"]] == [
        ("car", None, False, ["s", "n1", "n2"]),
        ("truck", "relabelled", True, ["n3"]),
        ("car", "unsure", False, ["u"]),
        ("car", "accepted", True, ["n4"]),
    ]
    assert body["skipped_human"] == 0


def test_a_higher_threshold_takes_fewer_look_alikes(api: ApiHarness) -> None:
    body = preview(api, min_similarity=0.96).json()

    assert body["crop_ids"] == ["s", "n1"]
    assert body["threshold"] == 0.96


def test_applying_the_preview_is_one_batch_that_one_undo_reverts(api: ApiHarness) -> None:
    before = labels(api)
    expect = preview(api).json()["crop_ids"]

    response = apply(api, expect)

    assert response.status_code == 200, response.text
    batch = response.json()
    assert batch["changed"] == 4
    assert {event["batch_id"] for event in batch["events"]} == {batch["batch_id"]}
    after = labels(api)
    assert {crop for crop, label in after.items() if label == "bus"} == {*expect, "bus1"}
    assert (after["n3"], after["n4"], after["far"]) == ("truck", None, None)  # left alone

    undone = api.post("/v1/labels/undo", who="operator", json={"batch_id": batch["batch_id"]})

    assert undone.status_code == 200, undone.text
    assert labels(api) == before
    assert api.get("/v1/results/u").json()["reviews"]["detection"]["status"] == "unsure"


def test_include_human_overwrites_human_labels_and_undo_restores_them(api: ApiHarness) -> None:
    expect = preview(api, include_human=True).json()["crop_ids"]

    batch = apply(api, expect, include_human=True).json()

    assert labels(api)["n3"] == "bus"
    api.post("/v1/labels/undo", who="operator", json={"batch_id": batch["batch_id"]})
    assert labels(api)["n3"] == "truck"
    assert api.get("/v1/results/n4").json()["reviews"]["detection"]["status"] == "accepted"


def test_a_preview_that_no_longer_holds_is_409_and_changes_nothing(api: ApiHarness) -> None:
    expect = preview(api).json()["crop_ids"]
    post(api, "/v1/labels", {"crop_ids": ["n1"], "label": "truck"}, who="operator2")  # meanwhile
    before = labels(api)

    response = apply(api, expect)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "preview_changed"
    assert "no longer n1" in error["message"]
    assert labels(api) == before


def test_a_node_that_did_not_run_on_a_look_alike_is_counted_not_changed(api: ApiHarness) -> None:
    body = preview(api, node="color", label="red").json()

    assert body["crop_ids"] == ["s", "n1"]  # the others have no color result
    assert body["not_run"] == 5


@pytest.mark.parametrize(
    ("url", "overrides", "status", "code"),
    [
        ("/v1/labels/similar/preview", {"label": "forklift"}, 422, "label_not_in_schema"),
        ("/v1/labels/similar", {"label": "forklift", "expect": []}, 422, "label_not_in_schema"),
        ("/v1/labels/similar/preview", {"crop_id": "nope"}, 404, "unknown_crop"),
        ("/v1/labels/similar/preview", {"crop_id": "bare"}, 409, "not_embedded"),
        ("/v1/labels/similar/preview", {"k": 101}, 422, "invalid_request"),
        ("/v1/labels/similar/preview", {"min_similarity": 1.5}, 422, "invalid_request"),
        ("/v1/labels/similar", {}, 422, "invalid_request"),  # no expect
    ],
)
def test_bad_bulk_relabels_are_refused(
    api: ApiHarness, url: str, overrides: dict[str, Any], status: int, code: str
) -> None:
    before = labels(api)
    body = {"crop_id": "s", "label": "bus", "k": 10, "min_similarity": 0.8} | overrides

    response = api.post(url, who="operator", json=body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert labels(api) == before


def test_a_viewer_may_not_preview_nor_apply(api: ApiHarness) -> None:
    body = {"crop_id": "s", "label": "bus"}

    assert api.post("/v1/labels/similar/preview", who="viewer", json=body).status_code == 403
    assert (
        api.post("/v1/labels/similar", who="viewer", json=body | {"expect": []}).status_code == 403
    )


def test_without_image_search_bulk_relabel_is_unavailable(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as harness:
        seed(harness, "s")
        response = harness.post("/v1/labels/similar/preview", json={"crop_id": "s", "label": "car"})

    assert (response.status_code, response.json()["error"]["code"]) == (503, "search_unavailable")
