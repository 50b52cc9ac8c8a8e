"""API spec: generated requests for every operation of the OpenAPI schema get no 5xx, and
their answers conform to the schema (status codes, content types, bodies); schema-valid
requests are accepted and schema-invalid ones rejected with a 4xx.

Bounded: 20 examples per operation and mode, on SQLite and PostgreSQL, as an admin (every
route reachable), drawn from fixed seeds (tests.support.hypothesis_profiles); ``make fuzz``
draws ten times as many from random seeds. The admin key goes in through schemathesis' auth,
so a case whose credentials it made invalid is sent as made, and must be refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.support.api import ApiHarness, database_for, running_api, seed
from tests.support.hypothesis_profiles import examples


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiHarness]:
    folder = tmp_path_factory.mktemp("fuzz")
    with (
        database_for(request.param, request, folder) as url,
        running_api(
            url, folder, rate_limit="1000000/minute", unauthenticated_rate_limit="1000000/minute"
        ) as harness,
    ):
        for n in range(5):
            seed(harness, f"c{n}", outputs={"color": {"color": "red"} if n % 2 else None})
        harness.post("/v1/label-schemas/detection/labels", json={"name": "bus"})
        harness.post("/v1/labels", json={"crop_ids": ["c1", "c2"], "label": "bus"})
        yield harness


@pytest.fixture(scope="module")
def api_schema(api: ApiHarness) -> Any:
    # 400: a request the schema allows but the API cannot use (an opaque cursor not made by
    # the API, a range of too many buckets); 415: an upload whose bytes are no image (a schema
    # cannot say "a JPEG"); 422 stays a failure: schema and validation differ
    accepted = ["2xx", "3xx", "400", "401", "403", "404", "409", "415", "429"]
    config = SchemathesisConfig.from_dict(
        {
            "checks": {"positive_data_acceptance": {"expected-statuses": accepted}},
            # the key as the OpenAPI bearer scheme says; not when a case negates a credential
            "auth": {"openapi": {"HTTPBearer": {"bearer": api.tokens["admin"]}}},
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", api.app, config=config)


OPERATIONS = [
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("GET", "/v1/results"), ("GET", "/v1/results/{crop_id}"), ("GET", "/v1/crops/{crop_id}.jpg"),
    ("GET", "/v1/aggregates"), ("POST", "/v1/labels"), ("POST", "/v1/labels/undo"),
    ("POST", "/v1/ingest"),
    ("POST", "/v1/configs/validate"), ("POST", "/v1/configs"), ("GET", "/v1/configs"),
    ("GET", "/v1/configs/{version_id}"), ("POST", "/v1/configs/{version_id}/assign"),
    ("GET", "/v1/edges"), ("GET", "/v1/edges/{site}/{agent_id}"),
    ("POST", "/v1/pipelines/validate"), ("POST", "/v1/pipelines"), ("GET", "/v1/pipelines"),
    ("GET", "/v1/pipelines/{pipeline_id}"), ("POST", "/v1/pipelines/{pipeline_id}/activate"),
    ("GET", "/v1/models/cards"),
    ("GET", "/v1/facets"), ("POST", "/v1/reviews"), ("GET", "/v1/label-schemas"),
    ("GET", "/v1/label-schemas/{node}"), ("POST", "/v1/label-schemas/{node}/labels"),
]  # fmt: skip
# not called: the search routes and /v1/labels/similar[/preview], which need an image search
# (this app has none: 503, which a schema-valid request must not get)
UNPARAMETRISED = {"/healthz", "/readyz", "/metrics"}  # no schema-invalid request to make
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or path not in UNPARAMETRISED
]


REFUSED_KEYS = {"unauthorized", "ambiguous_credentials"}


# schemathesis' pytest loaders (from_fixture) fail on pytest 9 (``Function._nodeid``): each
# operation's strategy is run through hypothesis here instead
@pytest.mark.hypothesis  # what ``make fuzz`` selects
@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_operation_answers_5xx_or_off_schema(
    api_schema: Any,
    record_property: Callable[[str, object], None],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    error_codes: list[str | None] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples(20),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def call(case: Any) -> None:
        response = case.call_and_validate()
        error_codes.append(_error_code(response))

    call()

    record_property("examples", len(error_codes))  # make fuzz counts them (nested: no statistics)
    if mode is GenerationMode.POSITIVE and path not in UNPARAMETRISED:
        assert not set(error_codes) <= REFUSED_KEYS, "no case got past authentication"


def _error_code(response: Any) -> str | None:
    """The ``error.code`` of an error answer (schemathesis' response), else None."""
    if response.status_code < 400:
        return None
    body = response.json()  # every error of the API has the JSON error body
    return body["error"]["code"] if isinstance(body, dict) else None


def test_the_schema_names_every_route(api: ApiHarness) -> None:
    paths = set(api.client.get("/openapi.json").json()["paths"])

    assert paths == {
        "/healthz", "/readyz", "/metrics", "/v1/results", "/v1/results/{crop_id}",
        "/v1/crops/{crop_id}.jpg", "/v1/aggregates", "/v1/labels", "/v1/labels/undo",
        "/v1/ingest", "/v1/search/similar/{crop_id}", "/v1/search/image",
        "/v1/configs/validate", "/v1/configs", "/v1/configs/{version_id}",
        "/v1/configs/{version_id}/assign", "/v1/edges", "/v1/edges/{site}/{agent_id}",
        "/v1/pipelines/validate", "/v1/pipelines", "/v1/pipelines/{pipeline_id}",
        "/v1/pipelines/{pipeline_id}/activate", "/v1/models/cards",
        "/v1/facets", "/v1/reviews", "/v1/labels/similar/preview", "/v1/labels/similar",
        "/v1/label-schemas", "/v1/label-schemas/{node}", "/v1/label-schemas/{node}/labels",
        "/v1/pipelines/{pipeline_id}/replay", "/v1/replays", "/v1/replays/{job_id}",
        "/v1/workers", "/v1/heads", "/v1/heads/{sha256}",
        "/v1/models", "/v1/models/{sha256}/bundle",
        "/v1/rollouts", "/v1/rollouts/{rollout_id}", "/v1/rollouts/{rollout_id}/promote",
        "/v1/rollouts/{rollout_id}/rollback",
    }  # fmt: skip
    assert api.client.get("/docs").status_code == 200
