"""API specs: result filters, keyset pagination, result detail, crop JPEGs, aggregates.

Run on SQLite and on a real PostgreSQL; the filter cases share one seeded database per dialect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import T0, ApiHarness, database_for, labelled_pipeline, running_api, seed
from tests.support.protocol_samples import real_jpeg

H = timedelta(hours=1)
# crop_id, camera, hours after T0, edge class, edge score, color node output (None: skipped)
DATA: list[tuple[str, str, int, str, float, dict[str, Any] | None]] = [
    ("c01", "cam01", 0, "car", 0.9, {"color": "red", "confidence": 0.8}),
    ("c02", "cam01", 1, "person", 0.5, None),
    ("c03", "cam02", 2, "car", 0.3, {"color": "blue", "confidence": 0.6}),
    ("c04", "cam02", 25, "truck", 0.7, {"color": "red", "confidence": 0.9}),
    ("c05", "cam03", 26, "car", 0.95, {"color": "white"}),
]
SCHEMAS = {"detection": ["person", "car", "truck"], "color": ["red", "blue", "green", "white"]}
# crop_id, node, human label
LABELS = [
    ("c01", "detection", "truck"),  # disagrees with the edge's car
    ("c02", "detection", "person"),  # agrees with the edge
    ("c03", "color", "green"),  # disagrees with the classifier's blue
    ("c04", "color", "red"),  # agrees with the classifier
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiHarness]:
    folder = tmp_path_factory.mktemp("api")
    pipeline = labelled_pipeline(folder, SCHEMAS)
    with (
        database_for(request.param, request, folder) as url,
        running_api(url, folder, pipeline=pipeline) as api,
    ):
        for crop_id, camera, hours, class_name, score, color in DATA:
            seed(
                api,
                crop_id,
                camera=camera,
                at=T0 + hours * H,
                class_name=class_name,
                score=score,
                outputs={"color": color},
            )
        for crop_id, node, label in LABELS:
            response = api.post(
                "/v1/labels",
                who="operator",
                json={"crop_ids": [crop_id], "node": node, "label": label},
            )
            assert response.status_code == 200, response.text
        yield api


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["crop_id"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["c05", "c04", "c03", "c02", "c01"]),  # all, newest first
        ({"order": "asc"}, ["c01", "c02", "c03", "c04", "c05"]),
        ({"site": "plant-a"}, ["c05", "c04", "c03", "c02", "c01"]),  # every crop's site
        ({"site": "plant-z"}, []),
        ({"camera": "cam01"}, ["c02", "c01"]),
        ({"class_name": "car"}, ["c05", "c03", "c01"]),
        ({"label": "red"}, ["c04", "c01"]),  # classifier labels (and c04's human one)
        ({"label": "truck"}, ["c01"]),  # a human label; the edge class is no label...
        ({"label": "truck", "node": "detection"}, ["c04", "c01"]),  # ...unless node=detection
        ({"label": "green", "node": "color"}, ["c03"]),  # human label on a classifier node
        ({"label": "blue", "node": "other"}, []),
        ({"node": "color"}, ["c05", "c04", "c03", "c01"]),  # c02's color node was skipped
        ({"min_score": 0.5, "max_score": 0.9}, ["c04", "c02", "c01"]),  # bounds inclusive
        ({"captured_from": "2024-05-01T01:00:00Z", "captured_to": "2024-05-02T01:00:00Z"},
         ["c03", "c02"]),  # from inclusive, to exclusive
        ({"captured_from": "2024-05-01T03:00:00+02:00"}, ["c05", "c04", "c03", "c02"]),  # zone
        ({"reviewed": "true"}, ["c04", "c03", "c02", "c01"]),
        ({"reviewed": "false"}, ["c05"]),
        ({"disagreement": "true"}, ["c03", "c01"]),
        ({"disagreement": "false"}, ["c05", "c04", "c02"]),
        ({"camera": "cam02", "disagreement": "true"}, ["c03"]),
    ],
)  # fmt: skip
def test_results_are_filtered(
    seeded: ApiHarness, params: dict[str, Any], expected: list[str]
) -> None:
    assert ids(seeded.get("/v1/results", who="viewer", params=params)) == expected


def test_the_same_camera_name_on_two_sites_is_told_apart(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        seed(api, "a-gate", site="plant-a", camera="gate", at=T0)
        seed(api, "b-gate", site="plant-b", camera="gate", at=T0 + H)
        seed(api, "b-dock", site="plant-b", camera="dock", at=T0 + 2 * H)
        site = ids(api.get("/v1/results", params={"site": "plant-b"}))
        gate = ids(api.get("/v1/results", params={"camera": "gate"}))
        site_gate = ids(api.get("/v1/results", params={"site": "plant-b", "camera": "gate"}))
        day = {"from": "2024-05-01T00:00:00Z", "to": "2024-05-02T00:00:00Z", "bucket": "day"}
        per_site = api.get("/v1/aggregates", params=day | {"by": "site"}).json()["rows"]
        cameras = api.get("/v1/aggregates", params=day | {"by": "camera", "site": "plant-b"})

    assert site == ["b-dock", "b-gate"]
    assert gate == ["b-gate", "a-gate"]  # the camera name alone: both sites
    assert site_gate == ["b-gate"]
    assert [(r["key"], r["count"]) for r in per_site] == [("plant-a", 1), ("plant-b", 2)]
    assert [(r["key"], r["count"]) for r in cameras.json()["rows"]] == [("dock", 1), ("gate", 1)]


@pytest.mark.parametrize(
    ("params", "status", "code", "says"),
    [
        ({"limit": 501}, 422, "invalid_request", "less than or equal to 500"),
        ({"captured_from": "2024-05-01T00:00:00"}, 422, "invalid_request", "timezone"),
        ({"min_score": 1.5}, 422, "invalid_request", "min_score"),
        ({"captured_to": "1714521600"}, 422, "invalid_request", "ISO 8601"),  # no Unix times
        ({"camera": "cam\x00"}, 422, "invalid_request", "camera"),  # PostgreSQL refuses NUL
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor", "expected a cursor"),
    ],
)
def test_invalid_filters_say_what_was_expected(
    seeded: ApiHarness, params: dict[str, Any], status: int, code: str, says: str
) -> None:
    response = seeded.get("/v1/results", params=params)

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]


def test_result_detail_has_outputs_provenance_detection_and_labels(seeded: ApiHarness) -> None:
    body = seeded.get("/v1/results/c03", who="viewer").json()

    assert body["detection"]["class_name"] == "car"
    assert body["detection"]["box"] == [10, 20, 110, 220]
    assert body["provenance"] == {
        "model_sha256": "ab" * 32, "config_hash": "c1", "agent_version": "0.1",
        "pipeline_name": "default", "pipeline_version": "v1",
    }  # fmt: skip
    [output] = body["outputs"]
    assert output["node"] == "color"
    assert output["label"] == "blue"
    assert output["output"] == {"color": "blue", "confidence": 0.6}
    assert body["classifiers"]["color"] == {"status": "ok", "label": "blue", "score": 0.6}
    assert body["human_labels"] == {"color": "green"}
    assert [(h["node"], h["label"], h["actor"]) for h in body["labels"]] == [
        ("color", "green", "operator-key")
    ]
    assert [(e["old_label"], e["new_label"]) for e in body["history"]] == [(None, "green")]
    assert body["crop_url"] == "/v1/crops/c03.jpg"


def test_unknown_result_is_404(seeded: ApiHarness) -> None:
    response = seeded.get("/v1/results/nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_crop"


def test_crop_jpeg_is_served_with_an_etag_and_304_when_unchanged(seeded: ApiHarness) -> None:
    response = seeded.get("/v1/crops/c01.jpg", who="viewer")

    assert response.status_code == 200
    assert response.content == real_jpeg()
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["etag"] == f'"{hashlib.sha256(real_jpeg()).hexdigest()}"'
    assert "immutable" in response.headers["cache-control"]

    again = seeded.get(
        "/v1/crops/c01.jpg", who="viewer", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


def test_crop_jpeg_larger_than_one_chunk_streams_whole(tmp_path: Path) -> None:
    big = real_jpeg() + bytes(200_000)  # a JPEG with trailing bytes: over FileResponse's chunk
    with running_api(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path) as api:
        seed(api, "big", jpeg=big)

        response = api.get("/v1/crops/big.jpg")

    assert response.status_code == 200
    assert response.content == big


def test_crop_jpeg_missing_from_the_store_is_404(tmp_path: Path) -> None:
    with running_api(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path) as api:
        seed(api, "gone")
        api.crops.path(hashlib.sha256(real_jpeg()).hexdigest()).unlink()

        response = api.get("/v1/crops/gone.jpg")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "crop_missing"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"by": "camera", "bucket": "day"},
         [("2024-05-01", "cam01", 2), ("2024-05-01", "cam02", 1),
          ("2024-05-02", "cam02", 1), ("2024-05-02", "cam03", 1)]),
        ({"by": "class", "bucket": "hour", "to": "2024-05-01T02:00:00Z"},
         [("2024-05-01T00", "car", 1), ("2024-05-01T01", "person", 1)]),
        # a label is the current human label, else the edge class (node=detection)...
        ({"by": "label", "bucket": "day"},
         [("2024-05-01", "car", 1), ("2024-05-01", "person", 1), ("2024-05-01", "truck", 1),
          ("2024-05-02", "car", 1), ("2024-05-02", "truck", 1)]),
        # ...or the classifier's label (null when it was skipped)
        ({"by": "label", "bucket": "day", "node": "color"},
         [("2024-05-01", None, 1), ("2024-05-01", "green", 1), ("2024-05-01", "red", 1),
          ("2024-05-02", "red", 1), ("2024-05-02", "white", 1)]),
    ],
)  # fmt: skip
def test_aggregates_count_per_bucket(
    seeded: ApiHarness, params: dict[str, Any], expected: list[tuple[str, str | None, int]]
) -> None:
    query = {"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"} | params
    response = seeded.get("/v1/aggregates", who="viewer", params=query)

    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    width = 13 if params["bucket"] == "hour" else 10
    got = [(r["bucket"][:width], r["key"], r["count"]) for r in rows]
    assert sorted(got, key=lambda r: (r[0], r[1] or "")) == expected
    assert all(r["bucket"].endswith(("Z", "+00:00")) for r in rows)


def test_aggregates_refuse_an_inverted_range(seeded: ApiHarness) -> None:
    response = seeded.get(
        "/v1/aggregates",
        params={"by": "camera", "from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"},
    )

    assert response.status_code == 400
    assert "expected from < to" in response.json()["error"]["message"]


def test_keyset_pages_have_no_duplicates_or_gaps_while_rows_arrive(seeded: ApiHarness) -> None:
    # given crops sharing capture times (ties are broken by id)
    base = T0 + 100 * H
    for n in range(30):
        seed(seeded, f"p{n:02d}", camera="page", at=base + (n // 3) * H)
    seen: list[str] = []
    cursor = None
    arrived = 0
    # when paging while crops arrive: newer, as old as the cursor, and older than it
    while True:
        params = {"camera": "page", "limit": 7} | ({"cursor": cursor} if cursor else {})
        page = seeded.get("/v1/results", who="viewer", params=params).json()
        seen += [item["crop_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        last_at = page["items"][-1]["captured_at"]
        for offset in (H, timedelta(0), -50 * H):
            arrived += 1
            seed(seeded, f"new{arrived:02d}", camera="page", at=_parse(last_at) + offset)
    # then every crop there at the start shows up exactly once, in order
    assert len(seen) == len(set(seen))
    assert {f"p{n:02d}" for n in range(30)} <= set(seen)
    originals = [crop for crop in seen if crop.startswith("p")]
    assert originals == sorted(originals, key=lambda c: (int(c[1:]) // 3, int(c[1:])), reverse=True)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_query_parameter_given_twice_is_400_naming_it(seeded: ApiHarness) -> None:
    response = seeded.get("/v1/results?camera=cam01&camera=cam02")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "repeated_parameter"
    assert "'camera'" in error["message"]
