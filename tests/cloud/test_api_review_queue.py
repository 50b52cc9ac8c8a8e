"""API specs: the review queue's sorts page through every crop exactly once, and the facets
count the values the filter drop-downs offer.

Run on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import T0, ApiHarness, database_for, labelled_pipeline, running_api, seed

H = timedelta(hours=1)
# vtype (a vehicle type node) shares car, truck and bus with the edge's classes; taxi is its own
SCHEMAS = {"vtype": ["car", "taxi", "truck", "bus"]}
# crop id (captured one hour apart, in this order), site, camera, edge class and score,
# vtype output (None: skipped), color output
DATA: list[tuple[str, str, str, str, float, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("q01", "plant-a", "cam01", "car", 0.9, {"type": "car", "score": 0.8}, None),
    ("q02", "plant-a", "cam01", "car", 0.5, {"type": "truck", "score": 0.6}, None),  # disagrees
    ("q03", "plant-a", "cam01", "truck", 0.5, {"type": "truck", "score": 0.3}, None),
    ("q04", "plant-a", "cam01", "car", 0.2, {"type": "taxi", "score": 0.9}, None),  # no class
    ("q05", "plant-a", "cam02", "person", 0.7, None, {"color": "red"}),
    ("q06", "plant-a", "cam02", "bus", 0.5, {"type": "car", "score": 0.6}, None),  # disagrees
    ("q07", "plant-a", "cam02", "car", 0.95, {"is_vehicle": False}, None),  # ok, no label
    ("q08", "plant-b", "cam02", "truck", 0.2, {"type": "bus", "score": 0.1}, None),  # disagrees
]  # fmt: skip
# q01: the detection accepted; q04: relabelled truck; q06: the vtype rejected
REVIEWS = [
    ("/v1/reviews", {"crop_ids": ["q01"], "status": "accepted"}),
    ("/v1/labels", {"crop_ids": ["q04"], "label": "truck"}),
    ("/v1/reviews", {"crop_ids": ["q06"], "node": "vtype", "status": "rejected"}),
]


def store(api: ApiHarness) -> None:
    for hour, (crop_id, site, camera, class_name, score, vtype, color) in enumerate(DATA):
        outputs = {"vtype": vtype} | ({"color": color} if color else {})
        seed(
            api,
            crop_id,
            site=site,
            camera=camera,
            at=T0 + hour * H,
            class_name=class_name,
            score=score,
            outputs=outputs,
        )
    for url, body in REVIEWS:
        response = api.post(url, who="operator", json=body)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def queue(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiHarness]:
    folder = tmp_path_factory.mktemp("queue")
    pipeline = labelled_pipeline(folder, SCHEMAS)
    with (
        database_for(request.param, request, folder) as url,
        running_api(url, folder, pipeline=pipeline) as api,
    ):
        store(api)
        yield api


def page_through(api: ApiHarness, params: dict[str, Any], *, limit: int) -> list[str]:
    """Every crop id of a listing, page by page with ``limit`` per page."""
    found: list[str] = []
    cursor = None
    for _ in range(100):
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = api.get("/v1/results", who="viewer", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        found += [item["crop_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError(f"more than 100 pages of {params}")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # the edge score, lowest first; ties newest first
        ({"sort": "confidence_asc"}, ["q08", "q04", "q06", "q03", "q02", "q05", "q01", "q07"]),
        ({"sort": "confidence_asc", "order": "asc"},
         ["q04", "q08", "q02", "q03", "q06", "q05", "q01", "q07"]),  # ties oldest first
        # the vtype score (crops where vtype ran); q07's has none: last
        ({"sort": "confidence_asc", "node": "vtype"},
         ["q08", "q03", "q06", "q02", "q01", "q04", "q07"]),
        # vtype names another edge class: q08 (bus for a truck), q06, q02; q04's taxi is none
        ({"sort": "disagreement"}, ["q08", "q06", "q02", "q07", "q05", "q04", "q03", "q01"]),
        ({"sort": "disagreement", "order": "asc"},
         ["q02", "q06", "q08", "q01", "q03", "q04", "q05", "q07"]),
        ({"sort": "disagreement", "node": "vtype", "camera": "cam02"}, ["q08", "q06", "q07"]),
        # without any review status first: q01, q04 and q06 have one
        ({"sort": "unreviewed_first"}, ["q08", "q07", "q05", "q03", "q02", "q06", "q04", "q01"]),
        # without a vtype status first (only crops where vtype ran)
        ({"sort": "unreviewed_first", "node": "vtype"},
         ["q08", "q07", "q04", "q03", "q02", "q01", "q06"]),
        ({"sort": "captured_at"}, ["q08", "q07", "q06", "q05", "q04", "q03", "q02", "q01"]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("limit", [1, 3, 500])
def test_each_sort_pages_through_every_crop_exactly_once_in_order(
    queue: ApiHarness, params: dict[str, Any], expected: list[str], limit: int
) -> None:
    assert page_through(queue, params, limit=limit) == expected


@pytest.mark.parametrize(
    ("params", "cursor_of"),
    [
        ({"sort": "disagreement"}, {"sort": "confidence_asc"}),  # another sort's cursor
        ({"sort": "confidence_asc"}, {"sort": "captured_at"}),
        ({"sort": "captured_at"}, {"sort": "unreviewed_first"}),
    ],
)
def test_a_cursor_of_another_sort_is_refused(
    queue: ApiHarness, params: dict[str, Any], cursor_of: dict[str, Any]
) -> None:
    cursor = queue.get("/v1/results", params=cursor_of | {"limit": 2}).json()["next_cursor"]

    response = queue.get("/v1/results", params=params | {"cursor": cursor})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


def forged(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        forged("confidence_asc", math.inf, "2024-05-01T00:00:00+00:00", 5),  # not finite
        forged("confidence_asc", 0.5, "0001-01-01T00:00:00+01:00", 5),  # before UTC's year 1
        forged("confidence_asc", 0.5, "2024-05-01T00:00:00", 5),  # no zone
        forged("confidence_asc", True, "2024-05-01T00:00:00Z", 5),  # not a number
        forged("confidence_asc", 0.5, "2024-05-01T00:00:00Z", 2**63),  # beyond the ids
        forged("confidence_asc", 0.5),
        "not-base64!",
    ],
)
def test_a_forged_cursor_is_400_not_a_failure(queue: ApiHarness, cursor: str) -> None:
    response = queue.get("/v1/results", params={"sort": "confidence_asc", "cursor": cursor})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


def test_a_forged_capture_time_cursor_before_utcs_year_1_is_400(queue: ApiHarness) -> None:
    cursor = forged("0001-01-01T00:00:00+01:00", 5)

    response = queue.get("/v1/results", params={"cursor": cursor})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_cursor")


def test_crops_stored_while_paging_cause_no_duplicates_or_gaps(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path, pipeline=labelled_pipeline(tmp_path, SCHEMAS)) as api:
        store(api)
        first = api.get("/v1/results", params={"sort": "confidence_asc", "limit": 3}).json()
        seed(api, "lowest", at=T0 + 9 * H, score=0.01)  # sorts before the cursor: not seen
        seed(api, "highest", at=T0 + 9 * H, score=0.99)  # after it: seen at the end
        rest = page_through(
            api, {"sort": "confidence_asc", "cursor": first["next_cursor"]}, limit=3
        )

    listed = [item["crop_id"] for item in first["items"]] + rest
    assert listed == ["q08", "q04", "q06", "q03", "q02", "q05", "q01", "q07", "highest"]


# --- facets -----------------------------------------------------------------------------------


def counts(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(row["value"], row["count"]) for row in rows]


def test_facets_count_cameras_classes_nodes_labels_and_statuses(queue: ApiHarness) -> None:
    response = queue.get("/v1/facets", who="viewer")

    assert response.status_code == 200, response.text
    facets = response.json()
    assert [(c["site"], c["camera"], c["count"]) for c in facets["cameras"]] == [
        ("plant-a", "cam01", 4), ("plant-a", "cam02", 3), ("plant-b", "cam02", 1),
    ]  # fmt: skip
    assert counts(facets["classes"]) == [("bus", 1), ("car", 4), ("person", 1), ("truck", 2)]
    assert counts(facets["nodes"]) == [("detection", 8), ("color", 1), ("vtype", 7)]
    labels = {node: counts(rows) for node, rows in facets["labels"].items()}
    assert labels == {
        "detection": [("bus", 1), ("car", 3), ("person", 1), ("truck", 3)],  # q04: a human truck
        "vtype": [("bus", 1), ("car", 2), ("taxi", 1), ("truck", 2)],
        "color": [("red", 1)],
    }
    statuses = {node: counts(rows) for node, rows in facets["statuses"].items()}
    assert statuses == {
        "detection": [("accepted", 1), ("relabelled", 1)],
        "vtype": [("rejected", 1)],
    }


def test_facets_of_one_site_and_time_range(queue: ApiHarness) -> None:
    site = queue.get("/v1/facets", params={"site": "plant-b"}).json()
    window = {"captured_from": (T0 + 4 * H).isoformat(), "captured_to": (T0 + 6 * H).isoformat()}
    early = queue.get("/v1/facets", params=window).json()

    assert [(c["site"], c["camera"], c["count"]) for c in site["cameras"]] == [
        ("plant-b", "cam02", 1)
    ]
    assert counts(site["nodes"]) == [("detection", 1), ("vtype", 1)]
    assert site["labels"] == {
        "detection": [{"value": "truck", "count": 1}],
        "vtype": [{"value": "bus", "count": 1}],
    }
    assert site["statuses"] == {}
    assert counts(early["classes"]) == [("bus", 1), ("person", 1)]  # q05 and q06


def test_facets_of_all_crops_count_as_those_of_a_range_holding_them_all(
    db_url: str, tmp_path: Path
) -> None:
    # all crops are counted from the indexes, then adjusted for human labels; a range joins
    with running_api(db_url, tmp_path, pipeline=labelled_pipeline(tmp_path, SCHEMAS)) as api:
        store(api)
        relabels = [("q02", "vtype", "car"), ("q07", "vtype", "taxi"), ("q05", "detection", "car")]
        for crop_id, node, label in relabels:
            body = {"crop_ids": [crop_id], "node": node, "label": label}
            assert api.post("/v1/labels", who="operator", json=body).status_code == 200
        everything = api.get("/v1/facets").json()
        window = {"captured_from": T0.isoformat(), "captured_to": (T0 + 99 * H).isoformat()}
        ranged = api.get("/v1/facets", params=window).json()

    assert everything == ranged
    assert counts(everything["labels"]["vtype"]) == [
        ("bus", 1), ("car", 3), ("taxi", 2), ("truck", 1),
    ]  # fmt: skip
    assert counts(everything["labels"]["detection"]) == [("bus", 1), ("car", 4), ("truck", 3)]


def test_facets_refuse_an_empty_range(queue: ApiHarness) -> None:
    at = T0.isoformat()

    response = queue.get("/v1/facets", params={"captured_from": at, "captured_to": at})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_range")
