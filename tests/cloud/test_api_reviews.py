"""API specs: review statuses (accepted, relabelled, rejected, unsure) are not classes; they are
set in batches, shown per node in results, filtered on, audited and undone like labels.

Run on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import ApiHarness, labelled_pipeline, running_api, seed

SCHEMAS = {"detection": ["car", "truck"], "color": ["red", "blue"]}


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(db_url, tmp_path, pipeline=labelled_pipeline(tmp_path, SCHEMAS)) as harness:
        seed(harness, "a", outputs={"color": {"color": "red", "score": 0.7}})
        seed(harness, "b", outputs={"color": {"color": "blue", "score": 0.4}})
        seed(harness, "c", outputs={"color": None})  # the color node was skipped
        yield harness


def review(api: ApiHarness, crop_ids: list[str], status: str, *, node: str = "detection") -> Any:
    body = {"crop_ids": crop_ids, "node": node, "status": status}
    return api.post("/v1/reviews", who="operator", json=body)


def relabel(api: ApiHarness, crop_ids: list[str], label: str, *, node: str = "detection") -> Any:
    body = {"crop_ids": crop_ids, "node": node, "label": label}
    return api.post("/v1/labels", who="operator", json=body)


def undo(api: ApiHarness, batch_id: str | None = None) -> Any:
    return api.post("/v1/labels/undo", who="operator", json={"batch_id": batch_id})


def reviews(api: ApiHarness, crop_id: str) -> dict[str, tuple[str, str | None]]:
    item = api.get(f"/v1/results/{crop_id}", who="viewer").json()
    return {node: (r["status"], r["label"]) for node, r in item["reviews"].items()}


def ids(api: ApiHarness, **params: Any) -> list[str]:
    response = api.get("/v1/results", who="viewer", params=params | {"order": "asc"})
    assert response.status_code == 200, response.text
    return [item["crop_id"] for item in response.json()["items"]]


def test_accepting_records_the_status_with_the_models_label(api: ApiHarness) -> None:
    response = review(api, ["a", "b"], "accepted", node="color")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["changed"], body["unchanged"], body["actor"]) == (2, 0, "operator-key")
    assert {(e["old_status"], e["new_status"], e["new_label"]) for e in body["events"]} == {
        (None, "accepted", None)
    }
    assert reviews(api, "a") == {"color": ("accepted", "red")}  # the model was right
    listed = {item["crop_id"]: item for item in api.get("/v1/results").json()["items"]}
    assert listed["b"]["reviews"]["color"]["status"] == "accepted"
    assert listed["b"]["reviews"]["color"]["by"] == "operator-key"
    assert listed["c"]["reviews"] == {}


def test_a_status_is_not_a_class_rejecting_needs_no_label_in_the_schema(
    api: ApiHarness,
) -> None:
    response = review(api, ["a"], "rejected")

    assert response.status_code == 200, response.text
    assert reviews(api, "a") == {"detection": ("rejected", None)}
    schema = api.get("/v1/label-schemas/detection").json()
    assert [label["name"] for label in schema["labels"]] == ["car", "truck"]  # no "rejected"


def test_a_relabel_is_the_status_relabelled_with_the_human_label(api: ApiHarness) -> None:
    relabel(api, ["a"], "truck")

    assert reviews(api, "a") == {"detection": ("relabelled", "truck")}


def test_rejecting_a_relabelled_crop_clears_its_label_and_undo_restores_both(
    api: ApiHarness,
) -> None:
    relabel(api, ["a"], "truck")
    batch = review(api, ["a", "b"], "rejected").json()

    assert [(e["crop_id"], e["old_label"], e["old_status"]) for e in batch["events"]] == [
        ("a", "truck", "relabelled"),
        ("b", None, None),
    ]
    assert api.get("/v1/results/a").json()["human_labels"] == {}

    undone = undo(api, batch["batch_id"])

    assert undone.status_code == 200, undone.text
    assert undone.json()["changed"] == 2  # the whole review batch, in one undo
    assert reviews(api, "a") == {"detection": ("relabelled", "truck")}
    assert api.get("/v1/results/a").json()["human_labels"] == {"detection": "truck"}
    assert reviews(api, "b") == {}


def test_undo_without_a_batch_id_undoes_the_last_review_batch(api: ApiHarness) -> None:
    relabel(api, ["a"], "truck")
    review(api, ["b"], "unsure")

    response = undo(api)

    assert response.json()["events"][0]["crop_id"] == "b"
    assert reviews(api, "b") == {}
    assert reviews(api, "a") == {"detection": ("relabelled", "truck")}  # an older batch


def test_a_review_batch_reviewed_again_since_is_not_undone(api: ApiHarness) -> None:
    batch = review(api, ["a", "b"], "accepted").json()["batch_id"]
    api.post("/v1/reviews", who="operator2", json={"crop_ids": ["b"], "status": "rejected"})

    response = undo(api, batch)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "relabelled_since"
    assert reviews(api, "a") == {"detection": ("accepted", "car")}  # nothing reverted


def test_the_same_status_again_changes_nothing(api: ApiHarness) -> None:
    review(api, ["a"], "unsure")

    body = review(api, ["a", "b"], "unsure").json()

    assert (body["changed"], body["unchanged"]) == (1, 1)


def test_the_history_shows_status_changes_beside_label_changes(api: ApiHarness) -> None:
    relabel(api, ["a"], "truck")
    review(api, ["a"], "accepted")

    history = api.get("/v1/results/a").json()["history"]

    assert [
        (e["old_label"], e["new_label"], e["old_status"], e["new_status"]) for e in history
    ] == [
        (None, "truck", None, "relabelled"),
        ("truck", None, "relabelled", "accepted"),
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"reviewed": "false"}, ["c"]),  # no status for any node
        ({"reviewed": "true"}, ["a", "b"]),
        ({"reviewed": "false", "node": "color"}, ["a"]),  # b has a color status, c no result
        ({"reviewed": "false", "node": "detection"}, ["b", "c"]),
        ({"status": "rejected"}, ["a"]),
        ({"status": "accepted", "node": "color"}, ["b"]),
        ({"status": "accepted", "node": "detection"}, []),
    ],
)
def test_results_filter_on_review_status(
    api: ApiHarness, params: dict[str, str], expected: list[str]
) -> None:
    review(api, ["a"], "rejected")
    review(api, ["b"], "accepted", node="color")

    assert ids(api, **params) == expected


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"crop_ids": ["a", "zz"], "status": "accepted"}, 404, "unknown_crop"),
        ({"crop_ids": ["c"], "node": "color", "status": "accepted"}, 200, None),  # skipped: ran
        ({"crop_ids": ["a"], "node": "plate", "status": "accepted"}, 400, "unknown_node"),
        ({"crop_ids": ["a"], "status": "relabelled"}, 422, "invalid_request"),  # needs a label
        ({"crop_ids": ["a"], "status": "Fall"}, 422, "invalid_request"),
        ({"crop_ids": [], "status": "accepted"}, 422, "invalid_request"),
    ],
)
def test_invalid_reviews_change_nothing(
    api: ApiHarness, body: dict[str, Any], status: int, code: str | None
) -> None:
    response = api.post("/v1/reviews", who="operator", json=body)

    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code
        assert all(reviews(api, crop) == {} for crop in ("a", "b", "c"))


def test_a_viewer_may_not_review(api: ApiHarness) -> None:
    response = api.post("/v1/reviews", who="viewer", json={"crop_ids": ["a"], "status": "accepted"})

    assert response.status_code == 403
