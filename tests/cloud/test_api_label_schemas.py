"""API specs: label schemas per node, where their labels come from, versions, and relabels
refused outside them.

Run on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lensflow.cloud.api.label_schemas import PALETTE
from lensflow.shared.classifiers.vehicle_type import TYPES
from tests.support.api import ApiHarness, labelled_pipeline, running_api, seed

PIPELINE = {
    "version": 1,
    "name": "falls",
    "pipeline": [
        {"name": "object_detection", "class": "edge_detection"},
        {
            "name": "posture",
            "class": "echo",
            "depends_on": "object_detection",
            "labels": ["Normal", {"name": "Fall", "key": "5", "color": "#CC0000"}, "Sitting"],
        },
        {"name": "vtype", "class": "vehicle_type", "depends_on": "object_detection"},
        {"name": "emb", "class": "echo", "depends_on": "object_detection"},
    ],
}


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(PIPELINE, sort_keys=False), encoding="utf-8")
    with running_api(db_url, tmp_path, pipeline=pipeline) as harness:
        # the edge model's ids: person 0, car 2, truck 7 (COCO)
        seed(harness, "p", class_name="person", class_id=0, outputs={"posture": {"label": "x"}})
        seed(harness, "t", class_name="truck", class_id=7, outputs={"color": {"color": "red"}})
        seed(harness, "c", class_name="car", class_id=2, outputs={"color": {"color": "blue"}})
        yield harness


def labels(schema: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    return [(label["id"], label["name"], label["key"]) for label in schema["labels"]]


def get_schema(api: ApiHarness, node: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/label-schemas/{node}", who="viewer", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def add_label(api: ApiHarness, node: str, name: str, *, who: str = "operator", **extra: Any) -> Any:
    return api.post(f"/v1/label-schemas/{node}/labels", who=who, json={"name": name, **extra})


def relabel(api: ApiHarness, crop_id: str, label: str, *, node: str = "detection") -> Any:
    body = {"crop_ids": [crop_id], "node": node, "label": label}
    return api.post("/v1/labels", who="operator", json=body)


# --- where the labels come from ---------------------------------------------------------------


def test_a_pipeline_labels_declaration_is_the_schema_in_its_order(api: ApiHarness) -> None:
    schema = get_schema(api, "posture")

    assert (schema["node"], schema["version"], schema["source"]) == ("posture", 1, "pipeline")
    # ids in declared order; the declared key 5 kept, the others the first free digits
    assert labels(schema) == [(0, "Normal", "1"), (1, "Fall", "5"), (2, "Sitting", "2")]
    assert [label["color"] for label in schema["labels"]] == [PALETTE[0], "#cc0000", PALETTE[2]]
    assert schema["created_by"] == "lensflow"  # computed, not an operator's


def test_without_a_card_the_detection_schema_is_the_classes_seen_by_class_id(
    api: ApiHarness,
) -> None:
    schema = get_schema(api, "detection")  # no card names the crops' model ("ab" * 32)

    assert schema["source"] == "observed"
    assert labels(schema) == [(0, "person", "1"), (2, "car", "2"), (7, "truck", "3")]


def test_a_plugins_own_classes_come_in_model_order(api: ApiHarness) -> None:
    schema = get_schema(api, "vtype")

    assert schema["source"] == "model"
    assert [label["name"] for label in schema["labels"]] == list(TYPES)
    assert [label["key"] for label in schema["labels"]][:10] == [*"123456789", None]


def test_a_node_without_declared_or_model_labels_gets_the_observed_ones(api: ApiHarness) -> None:
    schema = get_schema(api, "color")  # not in the pipeline; its results say red and blue

    assert schema["source"] == "observed"
    assert labels(schema) == [(0, "blue", "1"), (1, "red", "2")]  # alphabetical


def test_the_list_has_detection_first_then_the_pipelines_labelled_nodes(api: ApiHarness) -> None:
    response = api.get("/v1/label-schemas", who="viewer")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pipeline"] == "falls"
    # emb has no label anywhere: left out; object_detection is the detection
    assert [schema["node"] for schema in body["schemas"]] == ["detection", "posture", "vtype"]
    assert api.get("/v1/label-schemas", who="viewer").json() == body  # stored: stable


def test_the_active_pipeline_version_in_the_database_wins_over_the_file(
    api: ApiHarness, tmp_path: Path
) -> None:
    # the active version of the file's pipeline name ("falls") declares another node
    activate(api, tmp_path, {"mood": ["calm", "angry"]})

    assert labels(get_schema(api, "mood")) == [(0, "calm", "1"), (1, "angry", "2")]
    listed = api.get("/v1/label-schemas", who="viewer").json()["schemas"]
    assert [schema["node"] for schema in listed] == ["detection", "mood"]


def activate(api: ApiHarness, tmp_path: Path, labels: dict[str, list[str]]) -> None:
    """Store and activate a version of the "falls" pipeline declaring ``labels``."""
    text = labelled_pipeline(tmp_path / "stored", labels, name="falls", plugin="tshirt_color")
    stored = api.post("/v1/pipelines", json={"yaml": text.read_text(), "activate": True})
    assert stored.status_code == 201, stored.text


# --- versions -------------------------------------------------------------------------------------


def test_adding_a_label_is_a_new_version_and_moves_no_existing_key(api: ApiHarness) -> None:
    before = get_schema(api, "posture")

    response = add_label(api, "posture", "  Lying ", color="#00AA00")

    assert response.status_code == 201, response.text
    after = response.json()
    assert (after["version"], after["source"], after["created_by"]) == (
        2,
        "operator",
        "operator-key",
    )
    assert after["labels"][:3] == before["labels"]  # ids, keys and colours unchanged
    assert after["labels"][3] == {"id": 3, "name": "Lying", "key": "3", "color": "#00aa00"}
    assert get_schema(api, "posture") == after
    assert get_schema(api, "posture", version=1) == before


def test_a_new_edge_class_is_appended_with_its_class_id(api: ApiHarness) -> None:
    first = get_schema(api, "detection")
    seed(api, "b", class_name="bus", class_id=5)

    second = get_schema(api, "detection")

    assert second["version"] == 2
    assert labels(second) == [*labels(first)[:2], (5, "bus", "4"), (7, "truck", "3")]


def test_observed_labels_are_rebuilt_in_order_once_the_pipeline_declares_them(
    api: ApiHarness, tmp_path: Path
) -> None:
    observed = get_schema(api, "color")  # blue 0 key 1, red 1 key 2
    activate(api, tmp_path, {"color": ["red", "green", "blue"]})

    rebuilt = get_schema(api, "color")

    assert (observed["version"], rebuilt["version"], rebuilt["source"]) == (1, 2, "pipeline")
    # the declared order gives the ids; red and blue keep their keys and colours
    assert labels(rebuilt) == [(0, "red", "2"), (1, "green", "3"), (2, "blue", "1")]
    colours = {label["name"]: label["color"] for label in observed["labels"]}
    assert {lb["name"]: lb["color"] for lb in rebuilt["labels"] if lb["name"] in colours} == colours


@pytest.mark.parametrize(
    ("name", "status", "code", "says"),
    [
        ("Fall", 409, "label_exists", "has already"),
        ("fall", 422, "near_duplicate_label", "'Fall'"),  # only the case differs: a typo
        ("FALL ", 422, "near_duplicate_label", "'Fall'"),
        ("   ", 422, "invalid_request", "name"),  # nothing left once trimmed
        ("x" * 65, 422, "invalid_request", "name"),
    ],
)
def test_a_label_the_schema_has_or_nearly_has_is_refused(
    api: ApiHarness, name: str, status: int, code: str, says: str
) -> None:
    response = add_label(api, "posture", name)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert says in response.json()["error"]["message"]
    assert get_schema(api, "posture")["version"] == 1


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (("GET", "/v1/label-schemas/plate", {}), 404, "unknown_node"),
        (("GET", "/v1/label-schemas/posture?version=9", {}), 404, "unknown_version"),
        (("POST", "/v1/label-schemas/posture/labels", {"name": "x", "color": "red"}), 422,
         "invalid_request"),
    ],
)  # fmt: skip
def test_unknown_nodes_and_versions_are_404(
    api: ApiHarness, request_: tuple[str, str, dict[str, Any]], status: int, code: str
) -> None:
    method, url, body = request_

    response = api.client.request(method, url, headers=api.headers("operator"), json=body or None)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_node_the_pipeline_does_not_have_yet_starts_its_schema_with_a_first_label(
    api: ApiHarness,
) -> None:
    # an operator labels crops for a head to be trained: the node exists once it has labels
    first = add_label(api, "plate", "EU")
    second = add_label(api, "plate", "US")

    assert first.status_code == 201 and second.status_code == 201, second.text
    assert (first.json()["version"], first.json()["source"]) == (1, "operator")
    assert [label["name"] for label in second.json()["labels"]] == ["EU", "US"]
    assert api.get("/v1/label-schemas/plate", who="viewer").json()["version"] == 2


def test_a_viewer_may_read_schemas_but_not_add_labels(api: ApiHarness) -> None:
    assert api.get("/v1/label-schemas/posture", who="viewer").status_code == 200
    assert add_label(api, "posture", "Lying", who="viewer").status_code == 403


# --- relabels follow the schema -----------------------------------------------------------


def test_a_relabel_outside_the_schema_is_422_naming_the_allowed_labels(api: ApiHarness) -> None:
    response = relabel(api, "c", "forklift")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "label_not_in_schema"
    assert "'detection'" in error["message"]
    assert "'person', 'car', 'truck'" in error["message"]
    assert api.get("/v1/results/c").json()["human_labels"] == {}


def test_a_label_added_to_the_schema_may_then_be_given(api: ApiHarness) -> None:
    assert relabel(api, "p", "Lying", node="posture").status_code == 422

    assert add_label(api, "posture", "Lying").status_code == 201
    response = relabel(api, "p", "Lying", node="posture")

    assert response.status_code == 200, response.text
    assert api.get("/v1/results/p").json()["human_labels"] == {"posture": "Lying"}


def test_a_relabel_to_an_edge_class_seen_after_the_schema_was_stored_is_allowed(
    api: ApiHarness,
) -> None:
    get_schema(api, "detection")  # version 1: person, car, truck
    seed(api, "b", class_name="bus", class_id=5)

    response = relabel(api, "c", "bus")

    assert response.status_code == 200, response.text
    assert get_schema(api, "detection")["version"] == 2


def test_a_relabel_refused_for_a_near_duplicate_says_which_labels_exist(api: ApiHarness) -> None:
    response = relabel(api, "p", "fall ", node="posture")

    assert response.status_code == 422
    assert "'Normal', 'Fall', 'Sitting'" in response.json()["error"]["message"]
