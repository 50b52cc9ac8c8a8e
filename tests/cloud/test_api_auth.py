"""API specs: API keys and roles (401/403), the per-key rate limit (429), the body limit (413),
and the open health routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.api.keys import ApiKey, KeyStore
from tests.support.api import ApiHarness, running_api, seed


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path) as harness:
        seed(harness, "a")
        yield harness


def test_keys_work_as_bearer_token_or_x_api_key_on_every_dialect(
    db_url: str, tmp_path: Path
) -> None:
    with running_api(db_url, tmp_path) as api:
        token = api.tokens["viewer"]

        bearer = api.client.get("/v1/results", headers={"Authorization": f"Bearer {token}"})
        header = api.client.get("/v1/results", headers={"X-API-Key": token})

    assert bearer.status_code == 200
    assert header.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no key
        {"Authorization": "Bearer lfk_unknown"},  # an unknown key
        {"X-API-Key": "lfk_unknown"},
        {"Authorization": "Basic dXNlcjpwYXNz"},  # another scheme is no key
    ],
)
def test_requests_without_a_valid_key_are_401(api: ApiHarness, headers: dict[str, str]) -> None:
    response = api.client.get("/v1/results", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.json()["error"]["message"].startswith("expected")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_key_is_401(api: ApiHarness) -> None:
    assert KeyStore(api.engine).revoke("viewer-key")

    response = api.get("/v1/results", who="viewer")

    assert response.status_code == 401


def test_a_viewer_cannot_relabel(api: ApiHarness) -> None:
    response = api.post("/v1/labels", who="viewer", json={"crop_ids": ["a"], "label": "bus"})

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert "role operator or above" in error["message"]
    assert "viewer" in error["message"]


def test_keys_are_stored_hashed_only(api: ApiHarness) -> None:
    with Session(api.engine) as session:
        stored = session.scalars(select(ApiKey.token_sha256)).all()

    assert len(stored) == 4
    assert not set(api.tokens.values()) & set(stored)
    assert all(len(digest) == 64 for digest in stored)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_routes_need_no_key(api: ApiHarness, path: str) -> None:
    assert api.client.get(path).status_code == 200


def test_metrics_count_requests_by_route_template(api: ApiHarness) -> None:
    api.get("/v1/results/a")

    text = api.client.get("/metrics").text

    assert (
        'lensflow_api_requests_total{method="GET",route="/v1/results/{crop_id}",status="200"}'
        in (text)
    )


def test_over_the_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    with running_api(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path, rate_limit="3/minute"
    ) as api:
        within = [api.get("/v1/results", who="viewer") for _ in range(3)]
        over = api.get("/v1/results/a", who="viewer")  # the budget spans every route
        other_key = api.get("/v1/results", who="operator")
        health = [api.client.get("/healthz") for _ in range(5)]

    assert [r.status_code for r in within] == [200, 200, 200]
    assert within[0].headers["x-ratelimit-limit"] == "3"
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limited"
    assert 0 < int(over.headers["retry-after"]) <= 61
    assert other_key.status_code == 200  # limits are per key
    assert all(r.status_code == 200 for r in health)  # health checks are exempt


def test_an_oversized_body_is_413_naming_the_limit(tmp_path: Path) -> None:
    with running_api(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path, max_request_bytes=1024
    ) as api:
        body = {"crop_ids": ["a"] * 400, "label": "bus"}  # > 1024 bytes of JSON

        declared = api.post("/v1/labels", who="operator", json=body)
        chunked = api.client.post(
            "/v1/labels",
            headers=api.headers("operator") | {"Content-Type": "application/json"},
            content=(b"x" * 512 for _ in range(4)),  # no Content-Length: counted as read
        )

    for response in (declared, chunked):
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "payload_too_large"
        assert "at most 1024 bytes" in error["message"]
