"""API spec: no error answer names a server path or shows a traceback, and each is documented.

Every operation of the OpenAPI schema is called the ways a client can make it fail: without a
key, with a malformed one, with too low a role, with malformed and unknown ids, with query values
and bodies not as the schema says. Beside those come the failures of the server's own state: a
crop whose JPEG was deleted, search and ingest configured on files that are gone (or not
configured), a crop store that cannot be written, a database that is gone. Every error body is
scanned for absolute paths and tracebacks, and every status an operation answers must be listed
in its OpenAPI entry. A method a path does not have is 405 with ``Allow``, on every path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from lensflow.cloud.api.routes.ingest import use_ingest
from lensflow.cloud.ingest import IngestService
from lensflow.cloud.storage import FolderCropStore
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config.cloud import CloudConfig, DatabaseConfig, IngestConfig
from lensflow.shared.config.edge import DetectorConfig
from lensflow.shared.config.search import ExactIndexConfig, SearchConfig
from lensflow.shared.crops import encode_jpeg
from lensflow.shared.detectors.base import Detection, DetectionBatch, DetectorBackend, ModelInfo
from tests.support.api import ApiHarness, running_api, seed
from tests.support.bombs import jpeg_bomb

UNLIMITED: dict[str, Any] = {
    "rate_limit": "1000000/minute",
    "unauthenticated_rate_limit": "1000000/minute",
}
LEAKS = ("/tmp", "/work", "/home", "/var", "/root", "/usr", "/etc", "Traceback", 'File "')
"""What no error body may contain: the start of an absolute path, or a traceback."""
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OPEN = {"/healthz", "/readyz", "/metrics"}  # no key, no parameter: nothing a client gets wrong
OK = {200, 201, 304}
PHOTO = encode_jpeg(np.full((64, 64, 3), 90, np.uint8), quality=90)

# Path parameter values a client may send, each in place of every parameter of a path
BAD_IDS = [
    "nope",  # well-formed, unknown (a number parameter: not a number)
    "0",  # below the least id
    "999999",  # well-formed, unknown
    "a" * 65,  # too long
    "%00",  # NUL
]
# Query values a client may send, each in place of every query parameter
BAD_QUERY_VALUES = [
    "\x01",  # a control character
    "x" * 300,  # too long
    "-1",  # a negative number
]
BAD_HEADERS: list[dict[str, str]] = [
    {},  # no key
    {"Authorization": "Bearer"},  # a malformed key
    {"Authorization": "Bearer lfk_unknown"},  # an unknown key
]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    """An app whose search pipeline file and ingest model file do not exist, with crops.

    ``kept`` has its JPEG; ``gone``'s JPEG file was deleted; ``embedded`` has an embedding.
    """
    gone = tmp_path / "gone"
    search = SearchConfig(index=ExactIndexConfig(dim=3), node="emb")
    with running_api(
        f"sqlite:///{tmp_path / 'db.sqlite3'}",
        tmp_path,
        search=search,
        pipeline=gone / "pipeline.yaml",
        **UNLIMITED,
    ) as harness:
        config = CloudConfig(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
            crop_store=str(tmp_path / "crops"),
            pipeline=str(gone / "pipeline.yaml"),
            ingest=IngestConfig(detector=DetectorConfig(model=str(gone / "model.onnx"))),
        )
        use_ingest(
            harness.app,
            IngestService(config, results=harness.results, crops=harness.crops),
        )
        seed(harness, "kept")
        seed(harness, "embedded", outputs={"emb": {"vector": [1.0, 0.0, 0.0]}})
        seed(harness, "gone", jpeg=PHOTO)
        harness.crops.path(_sha256_of(harness, "gone")).unlink()
        yield harness


def test_no_error_answer_of_any_operation_names_a_server_path(
    api: ApiHarness, tmp_path: Path
) -> None:
    doc = api.client.get("/openapi.json").json()
    answered: dict[tuple[str, str], set[int]] = {}
    problems: list[str] = []

    for method, template, operation in _operations(doc):
        for headers, call in _failing_calls(api, template, operation):
            headers = headers | call.pop("headers", {})
            response = api.client.request(method, call.pop("url"), headers=headers, **call)
            answered.setdefault((method, template), set()).add(response.status_code)
            problems += _leaks(response, tmp_path) + _undocumented(doc, method, template, response)

    assert not problems, "\n".join(problems)
    untried = [op for op, statuses in answered.items() if op[1] not in OPEN and statuses < OK]
    assert not untried, f"no error answer from {untried}"
    assert not any(500 in statuses for statuses in answered.values()), answered


def test_a_crop_whose_file_was_deleted_says_what_is_missing_not_where(
    api: ApiHarness, tmp_path: Path
) -> None:
    response = api.get("/v1/crops/gone.jpg", who="viewer")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "crop_missing"
    assert "'gone'" in response.json()["error"]["message"]
    _assert_clean(response, tmp_path)


def test_search_and_ingest_whose_files_are_gone_answer_503_without_paths(
    api: ApiHarness, tmp_path: Path
) -> None:
    search = api.post("/v1/search/image", files={"file": ("q.jpg", PHOTO, "image/jpeg")})
    ingest = _upload(api, PHOTO)

    assert (search.status_code, search.json()["error"]["code"]) == (503, "search_failed")
    assert (ingest.status_code, ingest.json()["error"]["code"]) == (503, "ingest_unavailable")
    assert "detector" in ingest.json()["error"]["message"]
    for response in (search, ingest):
        _assert_clean(response, tmp_path)


def test_a_crop_store_that_cannot_be_written_answers_503_without_paths(
    api: ApiHarness, tmp_path: Path
) -> None:
    # given ingest on a working detector and pipeline, whose crop store's folder is a file
    pipeline = tmp_path / "pipeline.yaml"
    nodes = [{"name": "object_detection", "class": "edge_detection"}]
    pipeline.write_text(yaml.safe_dump({"version": 1, "name": "p", "pipeline": nodes}))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the crop store's folder should be")
    config = CloudConfig(
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
        crop_store=str(blocked),
        pipeline=str(pipeline),
        ingest=IngestConfig(detector=DetectorConfig(model="centre")),
    )
    service = IngestService(
        config,
        results=api.results,
        crops=FolderCropStore(blocked),
        load=lambda _config: (CentreDetector(), "0" * 64),
    )
    use_ingest(api.app, service)

    response = _upload(api, PHOTO)

    assert (response.status_code, response.json()["error"]["code"]) == (503, "storage_unavailable")
    _assert_clean(response, tmp_path)


def test_undoing_a_batch_twice_is_a_documented_409(api: ApiHarness, tmp_path: Path) -> None:
    body = {"crop_ids": ["kept"], "label": "car"}  # the edge class: in the detection's schema
    batch = api.post("/v1/labels", json=body).json()["batch_id"]
    api.post("/v1/labels/undo", json={"batch_id": batch})

    again = api.post("/v1/labels/undo", json={"batch_id": batch})

    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_undone")
    _assert_documented(api.client.get("/openapi.json").json(), "POST", "/v1/labels/undo", again)


def test_unconfigured_search_and_ingest_answer_503_saying_what_to_configure(
    tmp_path: Path,
) -> None:
    with running_api(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path) as api:
        search = api.post("/v1/search/image", files={"file": ("q.jpg", PHOTO, "image/jpeg")})
        similar = api.get("/v1/search/similar/nope")
        ingest = _upload(api, PHOTO)

    assert [r.json()["error"]["code"] for r in (search, similar, ingest)] == [
        "search_unavailable",
        "search_unavailable",
        "ingest_not_configured",
    ]
    for response in (search, similar, ingest):
        assert response.status_code == 503
        _assert_clean(response, tmp_path)


def test_a_database_that_is_gone_answers_503_without_paths(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    with running_api(f"sqlite:///{folder / 'lensflow.sqlite3'}", folder, **UNLIMITED) as api:
        shutil.rmtree(folder)
        api.engine.dispose()  # no pooled connection to the deleted file is left
        ready = api.client.get("/readyz")
        results = api.get("/v1/results", who="viewer")

    assert (ready.status_code, ready.json()["error"]["code"]) == (503, "database_unavailable")
    assert (results.status_code, results.json()["error"]["code"]) == (503, "storage_unavailable")
    for response in (ready, results):
        _assert_clean(response, tmp_path)


def test_a_method_a_path_does_not_have_is_405_with_allow(api: ApiHarness) -> None:
    doc = api.client.get("/openapi.json").json()

    for template, item in doc["paths"].items():
        allowed = {method.upper() for method in item}
        url = _fill(template, "1")
        for method in sorted(set(METHODS) - allowed):
            response = api.client.request(method, url, headers=api.headers())

            assert response.status_code == 405, (method, url, response.text)
            assert response.json()["error"]["code"] == "method_not_allowed"
            assert set(response.headers["allow"].split(", ")) >= allowed, (method, url)


def test_get_on_a_post_only_path_is_405_not_a_malformed_id(api: ApiHarness) -> None:
    # GET /v1/configs/{version_id} matches the path too: it used to answer 422 for id 'validate'
    response = api.get("/v1/configs/validate")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["message"] == ("expected POST on /v1/configs/validate, got GET")


class CentreDetector(DetectorBackend):
    """Finds one person in the middle of every image."""

    info = ModelInfo(path="centre", names={0: "person"}, input_size=(64, 64))

    def detect(self, images: Sequence[Image]) -> DetectionBatch:
        """One detection per image: its middle half."""
        found = []
        for image in images:
            height, width = image.shape[:2]
            box = (width / 4, height / 4, width * 3 / 4, height * 3 / 4)
            found.append([Detection(class_id=0, class_name="person", score=0.9, box=box)])
        return DetectionBatch(found)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(METHOD, path template, operation)`` of every operation of the schema."""
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), template, operation


def _failing_calls(
    api: ApiHarness, template: str, operation: dict[str, Any]
) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """``(headers, request arguments)`` of the ways a client can make ``operation`` fail."""
    admin, viewer = api.headers("admin"), api.headers("viewer")
    url = _fill(template, "nope")
    for headers in [*BAD_HEADERS, viewer]:
        yield headers, {"url": url}
    for value in BAD_IDS if "{" in template else []:
        yield admin, {"url": _fill(template, value)}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            for value in BAD_QUERY_VALUES:
                yield admin, {"url": url, "params": {parameter["name"]: value}}
            yield admin, {"url": f"{url}?{parameter['name']}=1&{parameter['name']}=2"}
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        yield admin, {"url": url, "json": {"unexpected": True}}
        yield admin, {"url": url, "json": {"crop_ids": ["nope"], "label": "x", "edges": []}}
        yield (
            admin,
            {
                "url": url,
                "content": b"{not json",
                "headers": {"Content-Type": "application/json"},
            },
        )
    if "multipart/form-data" in content:
        form = {"site": "site1", "camera": "cam1"}
        for data in (b"not an image", b"", jpeg_bomb(30000, 30000), PHOTO[:200]):
            yield (
                admin,
                {"url": url, "files": {"file": ("x.jpg", data, "image/jpeg")}, "data": form},
            )
        yield admin, {"url": url, "data": form}


def _fill(template: str, value: str) -> str:
    """The template with every ``{parameter}`` replaced by ``value``."""
    parts = template.split("{")
    return parts[0] + "".join(value + part.split("}", 1)[1] for part in parts[1:])


def _upload(api: ApiHarness, data: bytes) -> Any:
    return api.post(
        "/v1/ingest",
        files={"file": ("photo.jpg", data, "image/jpeg")},
        data={"site": "site1", "camera": "cam1"},
    )


def _sha256_of(api: ApiHarness, crop_id: str) -> str:
    crop = api.results.get_crop(crop_id)
    assert crop is not None
    return crop.jpeg_sha256


def _leaks(response: Any, tmp_path: Path) -> list[str]:
    """What an error answer's body shows that it must not: a server path, a traceback."""
    if response.status_code < 400:
        return []
    body = response.text
    found = [leak for leak in (*LEAKS, str(tmp_path)) if leak in body]
    return [f"{response.request.method} {response.request.url}: {body}"] if found else []


def _undocumented(doc: dict[str, Any], method: str, template: str, response: Any) -> list[str]:
    """The answer's status, unless the operation's OpenAPI entry lists it."""
    documented = doc["paths"][template][method.lower()]["responses"]
    if str(response.status_code) in documented:
        return []
    return [
        f"{method} {template} answered {response.status_code}, documented: "
        f"{sorted(documented)} ({response.text[:200]})"
    ]


def _assert_clean(response: Any, tmp_path: Path) -> None:
    """The answer names no server path and shows no traceback."""
    assert not _leaks(response, tmp_path)


def _assert_documented(doc: dict[str, Any], method: str, template: str, response: Any) -> None:
    """The operation's OpenAPI entry lists the status it answered with."""
    assert not _undocumented(doc, method, template, response)
