"""API specs: API keys and roles (401/403), the rate limits per key and, without a valid key,
per client address (429), the body limit (413), and the open health routes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.api.keys import TOKEN_PREFIX, ApiKey, KeyStore
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


# One credential per request: `Authorization: Bearer <key>` or `X-API-Key: <key>`. {key} is a
# viewer's key, {other} an operator's; each row: headers sent -> status, error code, message part
AUTH, API_KEY = "Authorization", "X-API-Key"
NO, BOTH = "unauthorized", "ambiguous_credentials"
CREDENTIAL_CASES = [
    # a well-formed key in either header
    ([(AUTH, "Bearer {key}")], 200, None, None),
    ([(AUTH, "bearer {key}")], 200, None, None),  # the scheme in any case
    ([(AUTH, "Bearer   {key}")], 200, None, None),  # one or more spaces
    ([(API_KEY, "{key}")], 200, None, None),
    # no key at all
    ([], 401, NO, "got none"),
    # well-formed, but unknown
    ([(AUTH, "Bearer lfk_unknown")], 401, NO, "unknown or revoked"),
    ([(API_KEY, "lfk_unknown")], 401, NO, "unknown or revoked"),
    # an Authorization that is not `Bearer <key>`, even with a valid key in it
    ([(AUTH, "Basic dXNlcjpwYXNz")], 401, NO, "got scheme 'Basic'"),
    ([(AUTH, "{key}")], 401, NO, "not '<scheme> <credentials>'"),
    ([(AUTH, "Bearer{key}")], 401, NO, "no space between"),
    ([(AUTH, "Bearer")], 401, NO, "got no key"),
    ([(AUTH, "Bearer {key} {key}")], 401, NO, "a malformed key"),
    ([(AUTH, "")], 401, NO, "got an empty value"),
    ([(AUTH, "n2|g[")], 401, NO, "not '<scheme> <credentials>'"),
    # an X-API-Key that holds no key
    ([(API_KEY, "")], 401, NO, "got an empty value"),
    ([(API_KEY, "<>")], 401, NO, "got a malformed key"),
    # both headers, whatever they hold (schemathesis: a malformed Authorization beside a
    # valid X-API-Key used to be 200, the X-API-Key used and the Authorization ignored)
    ([(AUTH, "n2|g["), (API_KEY, "{key}")], 400, BOTH, "1 Authorization header and 1 X-API"),
    ([(AUTH, "Bearer {key}"), (API_KEY, "<>")], 400, BOTH, "and 1 X-API-Key header"),
    ([(AUTH, "Bearer {key}"), (API_KEY, "{key}")], 400, BOTH, "and 1 X-API-Key header"),
    ([(AUTH, "Bearer {other}"), (API_KEY, "{key}")], 400, BOTH, "and 1 X-API-Key header"),
    # one header twice
    ([(AUTH, "Bearer {key}")] * 2, 400, BOTH, "got 2 Authorization headers"),
    ([(API_KEY, "{key}")] * 2, 400, BOTH, "got 2 X-API-Key headers"),
]


@pytest.mark.parametrize(("headers", "status", "code", "fragment"), CREDENTIAL_CASES)
def test_a_request_carries_exactly_one_well_formed_key(
    api: ApiHarness, headers: list[tuple[str, str]], status: int, code: str, fragment: str
) -> None:
    keys = {"key": api.tokens["viewer"], "other": api.tokens["operator"]}
    sent = [(name, value.format(**keys)) for name, value in headers]

    response = api.client.get("/v1/results", headers=sent)

    assert response.status_code == status
    if code is None:
        return
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith("expected")
    assert fragment in error["message"]
    assert not any(key in error["message"] for key in keys.values())  # keys are never echoed
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="lensflow"'


def test_both_headers_are_refused_before_either_key_is_looked_up(api: ApiHarness) -> None:
    # given a revoked key beside a valid one, the answer is the same 400: it tells nothing
    assert KeyStore(api.engine).revoke("operator-key")
    headers = {"Authorization": f"Bearer {api.tokens['viewer']}"}

    response = api.client.get(
        "/v1/results", headers=headers | {"X-API-Key": api.tokens["operator"]}
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "expected one API key, as 'Authorization: Bearer <key>' or as 'X-API-Key: <key>', "
        "got 1 Authorization header and 1 X-API-Key header"
    )


def test_the_schema_says_which_credentials_are_accepted(api: ApiHarness) -> None:
    doc = api.client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]

    assert schemes["HTTPBearer"] | {"description": ""} == {
        "type": "http", "scheme": "bearer", "bearerFormat": "API key", "description": "",
    }  # fmt: skip
    assert schemes["APIKeyHeader"] | {"description": ""} == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "",
    }  # fmt: skip
    for scheme in schemes.values():
        assert "400" in scheme["description"]
        assert "401" in scheme["description"]
    for path, item in doc["paths"].items():
        for operation in item.values():
            if path in {"/healthz", "/readyz", "/metrics"}:
                assert "security" not in operation
                continue
            assert operation["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
            assert "ambiguous_credentials" in operation["responses"]["400"]["description"]
            assert "Bearer <key>" in operation["responses"]["401"]["description"]
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


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


def test_fresh_random_keys_are_limited_per_client_address(tmp_path: Path) -> None:
    # given an attacker inventing a new key for every request, as the review did with 250
    with running_api(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path) as api:
        answers = [
            api.client.get("/v1/results", headers={"Authorization": f"Bearer {_random_key()}"})
            for _ in range(250)
        ]
        valid = api.get("/v1/results", who="viewer")  # from the same address

    statuses = [r.status_code for r in answers]
    assert statuses == [401] * 60 + [429] * 190  # api.unauthenticated_rate_limit: 60/minute
    over = answers[60]
    assert over.json()["error"]["code"] == "rate_limited"
    assert "from one client address without a valid API key" in over.json()["error"]["message"]
    assert 0 < int(over.headers["retry-after"]) <= 61
    assert over.headers["x-ratelimit-limit"] == "60"
    assert valid.status_code == 200  # a valid key has its own budget


# Every request without a valid key counts against its address: {key} is a viewer's key
UNAUTHENTICATED = [
    [],  # no credential
    [(AUTH, "Basic dXNlcjpwYXNz")],  # not a bearer key
    [(API_KEY, "<>")],  # malformed
    [(AUTH, "Bearer {key}"), (API_KEY, "{key}")],  # both headers
    [(AUTH, "Bearer lfk_unknown")],  # unknown
    [(AUTH, "Bearer {revoked}")],  # revoked
]


def test_all_requests_without_a_valid_key_share_their_address_budget(tmp_path: Path) -> None:
    with running_api(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path, unauthenticated_rate_limit="6/minute"
    ) as api:
        assert KeyStore(api.engine).revoke("operator-key")
        keys = {"key": api.tokens["viewer"], "revoked": api.tokens["operator"]}
        within = [
            api.client.get(
                "/v1/results", headers=[(name, value.format(**keys)) for name, value in headers]
            )
            for headers in UNAUTHENTICATED
        ]
        keyed = [api.get("/v1/results", who="viewer") for _ in range(10)]
        over = api.client.get("/v1/results")
        elsewhere = TestClient(api.app, client=("192.0.2.7", 50000)).get("/v1/results")

    assert [r.status_code for r in within] == [401, 401, 401, 400, 401, 401]
    assert {r.status_code for r in keyed} == {200}  # valid keys never use the address budget
    assert over.status_code == 429
    assert elsewhere.status_code == 401  # another address has its own budget


def _random_key() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


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
