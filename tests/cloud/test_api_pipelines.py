"""Pipeline DAG versions over the API: validation with lines, store, dedupe, activate, roles.

On SQLite and PostgreSQL; the plugins are the model-free built-ins (edge_detection,
tshirt_color), compiled by the workers' own compiler.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import ApiHarness, running_api

GOOD = """\
version: 1
name: review
pipeline:
  - name: object_detection
    class: edge_detection
  - name: shirt
    class: tshirt_color
    depends_on: object_detection
    when: {contains: [object_detection.detected_classes, person]}
"""
BROKEN = """\
version: 1
name: review
pipeline:
  - name: a
    class: edge_detection
    depends_on: b
  - name: b
    class: no_such_plugin
    depends_on: a
  - name: c
    class: tshirt_color
    when: "context['nowhere'] ==="
"""


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(db_url, tmp_path) as harness:
        yield harness


def test_a_valid_dag_gives_its_nodes_in_execution_order(api: ApiHarness) -> None:
    answer = api.post("/v1/pipelines/validate", who="viewer", json={"yaml": GOOD})

    assert answer.status_code == 200
    assert answer.json() == {
        "valid": True,
        "name": "review",
        "issues": [],
        "nodes": ["object_detection", "shirt"],
    }


def test_each_dag_problem_is_given_at_its_line(api: ApiHarness) -> None:
    answer = api.post("/v1/pipelines/validate", json={"yaml": BROKEN}).json()

    assert answer["valid"] is False and answer["nodes"] == []
    by_line = {(i["line"], i["field"]): i["message"] for i in answer["issues"]}
    assert "cycle" in by_line[(6, "pipeline.0.depends_on")]
    assert "no_such_plugin" in by_line[(8, "pipeline.1.class")]
    assert "invalid condition" in by_line[(12, "pipeline.2.when")]
    syntax = api.post("/v1/pipelines/validate", json={"yaml": "pipeline: [\n"}).json()
    assert syntax["valid"] is False and syntax["issues"][0]["line"] == 2


def test_a_class_whose_module_is_not_loaded_is_refused_without_importing_it(
    api: ApiHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an importable module that leaves a mark when imported (any import runs code)
    module = f"lensflow_import_probe_{uuid.uuid4().hex}"
    mark = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(f"open({str(mark)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = GOOD.replace("class: tshirt_color", f"class: {module}.Plugin")

    answer = api.post("/v1/pipelines/validate", who="viewer", json={"yaml": text}).json()

    assert answer["valid"] is False
    [issue] = answer["issues"]
    assert (issue["line"], issue["field"]) == (7, "pipeline.1.class")
    assert f"the API does not import {module!r}" in issue["message"]
    assert not mark.exists()
    assert module not in sys.modules


def test_a_class_of_a_loaded_module_is_checked_by_its_path(api: ApiHarness) -> None:
    path = "lensflow.shared.classifiers.shirt_color.ShirtColor"
    text = GOOD.replace("class: tshirt_color", f"class: {path}")

    answer = api.post("/v1/pipelines/validate", json={"yaml": text}).json()

    assert (answer["valid"], answer["nodes"]) == (True, ["object_detection", "shirt"])


def test_an_invalid_dag_is_not_stored(api: ApiHarness) -> None:
    answer = api.post("/v1/pipelines", who="operator", json={"yaml": BROKEN})

    assert answer.status_code == 400  # well-formed but unusable, as an invalid edge config
    error = answer.json()["error"]
    assert error["code"] == "invalid_pipeline" and "line 8: pipeline.1.class" in error["message"]
    assert api.get("/v1/pipelines").json() == []


def test_storing_the_same_text_twice_answers_the_first_version(api: ApiHarness) -> None:
    first = api.post("/v1/pipelines", who="operator", json={"yaml": GOOD})
    again = api.post("/v1/pipelines", who="operator", json={"yaml": GOOD})

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    stored = first.json()
    assert stored["name"] == "review" and stored["created_by"] == "operator-key"
    assert stored["sha256"] == hashlib.sha256(GOOD.encode()).hexdigest()
    assert stored["yaml"] == GOOD and stored["active"] is False
    assert api.get(f"/v1/pipelines/{stored['id']}").json() == stored
    assert len(api.get("/v1/pipelines").json()) == 1


def test_one_version_per_name_is_active(api: ApiHarness) -> None:
    first = api.post("/v1/pipelines", who="operator", json={"yaml": GOOD, "activate": True})
    second_text = GOOD.replace("person]", "car]")
    second = api.post("/v1/pipelines", who="operator", json={"yaml": second_text}).json()
    other = api.post(
        "/v1/pipelines",
        who="operator",
        json={"yaml": GOOD.replace("name: review", "name: other"), "activate": True},
    ).json()

    assert first.json()["active"] is True and second["active"] is False
    listed = api.get("/v1/pipelines").json()
    assert [v["id"] for v in listed] == [other["id"], second["id"], first.json()["id"]]

    answer = api.post(f"/v1/pipelines/{second['id']}/activate", who="operator")

    assert answer.status_code == 200 and answer.json()["active"] is True
    active = api.get("/v1/pipelines", params={"active": "true"}, who="viewer").json()
    assert {(v["name"], v["id"]) for v in active} == {
        ("review", second["id"]),
        ("other", other["id"]),
    }
    assert api.get(f"/v1/pipelines/{first.json()['id']}").json()["active"] is False
    review = api.get("/v1/pipelines", params={"name": "review", "limit": "1"}).json()
    assert [v["id"] for v in review] == [second["id"]]
    older = api.get("/v1/pipelines", params={"before": str(second["id"])}).json()
    assert [v["id"] for v in older] == [first.json()["id"]]


def test_a_viewer_reads_but_cannot_write(api: ApiHarness) -> None:
    stored = api.post("/v1/pipelines", who="operator", json={"yaml": GOOD}).json()

    refused = api.post("/v1/pipelines", who="viewer", json={"yaml": GOOD})
    not_activated = api.post(f"/v1/pipelines/{stored['id']}/activate", who="viewer")

    assert (refused.status_code, not_activated.status_code) == (403, 403)
    assert refused.json()["error"]["code"] == "forbidden"
    assert api.get(f"/v1/pipelines/{stored['id']}", who="viewer").status_code == 200
    assert api.client.get("/v1/pipelines").status_code == 401


def test_an_unknown_version_is_404(api: ApiHarness) -> None:
    for answer in (
        api.get("/v1/pipelines/999"),
        api.post("/v1/pipelines/999/activate", who="operator"),
    ):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "unknown_pipeline"
