"""API specs: relabel one crop or many, undo a batch, and the audit trail they leave.

Run on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.storage.models import HumanLabel, LabelEvent
from tests.support.api import ApiHarness, labelled_pipeline, running_api, seed

SCHEMAS = {"detection": ["car", "truck", "bus", "van"], "color": ["red", "blue", "green"]}


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    pipeline = labelled_pipeline(tmp_path, SCHEMAS)
    with running_api(db_url, tmp_path, pipeline=pipeline) as harness:
        for crop_id in ("a", "b", "c"):
            seed(harness, crop_id, outputs={"color": {"color": "red"}})
        yield harness


def relabel(
    api: ApiHarness,
    crop_ids: list[str],
    label: str,
    *,
    node: str = "detection",
    who: str = "operator",
) -> Any:
    return api.post(
        "/v1/labels", who=who, json={"crop_ids": crop_ids, "node": node, "label": label}
    )


def undo(api: ApiHarness, batch_id: str | None = None, *, who: str = "operator") -> Any:
    return api.post("/v1/labels/undo", who=who, json={"batch_id": batch_id} if batch_id else {})


def human_labels(api: ApiHarness, crop_id: str) -> dict[str, str]:
    labels: dict[str, str] = api.get(f"/v1/results/{crop_id}").json()["human_labels"]
    return labels


def events(api: ApiHarness) -> list[tuple[str | None, str | None, str, str | None]]:
    with Session(api.engine) as session:
        rows = session.scalars(select(LabelEvent).order_by(LabelEvent.id)).all()
        return [(e.old_label, e.new_label, e.actor, e.batch_id) for e in rows]


def test_relabel_one_crop_sets_its_label_and_records_the_change(api: ApiHarness) -> None:
    response = relabel(api, ["a"], "truck")

    assert response.status_code == 200, response.text
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["batch_id"])
    assert (body["changed"], body["unchanged"], body["actor"]) == (1, 0, "operator-key")
    [event] = body["events"]
    assert (event["crop_id"], event["node"], event["old_label"], event["new_label"]) == (
        "a", "detection", None, "truck",
    )  # fmt: skip
    assert human_labels(api, "a") == {"detection": "truck"}
    assert events(api) == [(None, "truck", "operator-key", body["batch_id"])]


def test_relabel_again_records_old_to_new_and_keeps_one_current_label(api: ApiHarness) -> None:
    relabel(api, ["a"], "truck")

    second = relabel(api, ["a"], "bus").json()
    same = relabel(api, ["a"], "bus").json()

    assert [(e["old_label"], e["new_label"]) for e in second["events"]] == [("truck", "bus")]
    assert (same["changed"], same["unchanged"]) == (0, 1)  # no change, no event
    assert human_labels(api, "a") == {"detection": "bus"}
    with Session(api.engine) as session:
        assert len(session.scalars(select(HumanLabel)).all()) == 1
    assert [(old, new) for old, new, _, _ in events(api)] == [(None, "truck"), ("truck", "bus")]


def test_relabel_a_classifier_node(api: ApiHarness) -> None:
    response = relabel(api, ["b"], "blue", node="color")

    assert response.status_code == 200, response.text
    assert human_labels(api, "b") == {"color": "blue"}
    assert (
        api.get("/v1/results", params={"disagreement": "true"}).json()["items"][0]["crop_id"] == "b"
    )


def test_bulk_relabel_is_one_batch(api: ApiHarness) -> None:
    relabel(api, ["a"], "bus")

    body = relabel(api, ["a", "b", "c", "b"], "bus").json()  # a: already bus; b twice

    assert (body["changed"], body["unchanged"]) == (2, 1)
    assert {e["crop_id"] for e in body["events"]} == {"b", "c"}
    assert {e["batch_id"] for e in body["events"]} == {body["batch_id"]}
    assert all(human_labels(api, c) == {"detection": "bus"} for c in ("a", "b", "c"))


def test_undo_reverts_exactly_that_batch_and_is_audited(api: ApiHarness) -> None:
    relabel(api, ["a"], "bus")
    relabel(api, ["b"], "car")
    batch = relabel(api, ["a", "b", "c"], "truck").json()["batch_id"]

    response = undo(api, batch)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["batch_id"], body["undoes"], body["changed"]) == (f"undo:{batch}", batch, 3)
    assert human_labels(api, "a") == {"detection": "bus"}  # back to the previous human label
    assert human_labels(api, "b") == {"detection": "car"}
    assert human_labels(api, "c") == {}  # back to no human label
    undo_events = [e for e in events(api) if e[3] == f"undo:{batch}"]
    assert {(old, new) for old, new, _, _ in undo_events} == {
        ("truck", None), ("truck", "bus"), ("truck", "car"),
    }  # fmt: skip
    history = api.get("/v1/results/a").json()["history"]
    assert [(e["old_label"], e["new_label"]) for e in history] == [
        (None, "bus"), ("bus", "truck"), ("truck", "bus"),
    ]  # fmt: skip
    assert api.get("/v1/results", params={"reviewed": "false"}).json()["items"][0]["crop_id"] == "c"


def test_undo_twice_is_a_conflict(api: ApiHarness) -> None:
    batch = relabel(api, ["a"], "bus").json()["batch_id"]
    undo(api, batch)

    response = undo(api, batch)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_undone"


def test_undo_without_batch_id_undoes_the_callers_last_batches_in_turn(api: ApiHarness) -> None:
    first = relabel(api, ["a"], "bus").json()["batch_id"]
    second = relabel(api, ["b"], "car").json()["batch_id"]
    relabel(api, ["c"], "van", who="operator2")  # someone else's: not the caller's last

    assert undo(api).json()["undoes"] == second
    assert undo(api).json()["undoes"] == first
    response = undo(api)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_batch"
    assert human_labels(api, "c") == {"detection": "van"}


def test_undo_refuses_a_batch_relabelled_since(api: ApiHarness) -> None:
    batch = relabel(api, ["a", "b"], "bus").json()["batch_id"]
    relabel(api, ["b"], "car", who="operator2")

    response = undo(api, batch)

    assert response.status_code == 409
    assert "b" in response.json()["error"]["message"]
    assert human_labels(api, "a") == {"detection": "bus"}  # nothing reverted
    assert human_labels(api, "b") == {"detection": "car"}


def test_only_an_admin_undoes_another_keys_batch(api: ApiHarness) -> None:
    batch = relabel(api, ["a"], "bus").json()["batch_id"]

    refused = undo(api, batch, who="operator2")
    done = undo(api, batch, who="admin")

    assert refused.status_code == 403
    assert done.status_code == 200
    assert done.json()["actor"] == "admin-key"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"crop_ids": ["a", "zz", "yy"], "label": "x"}, 404, "unknown_crop"),  # all or nothing
        ({"crop_ids": ["a"], "node": "plate", "label": "x"}, 400, "unknown_node"),
        ({"crop_ids": [], "label": "x"}, 422, "invalid_request"),
        ({"crop_ids": ["a"], "label": "bad\x00label"}, 422, "invalid_request"),
        ({"crop_ids": ["a"], "label": "x", "extra": 1}, 422, "invalid_request"),
    ],
)
def test_invalid_relabels_change_nothing(
    api: ApiHarness, body: dict[str, Any], status: int, code: str
) -> None:
    response = api.post("/v1/labels", who="operator", json=body)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert events(api) == []


def test_undo_of_an_unknown_batch_is_404(api: ApiHarness) -> None:
    response = undo(api, "0" * 32)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_batch"
