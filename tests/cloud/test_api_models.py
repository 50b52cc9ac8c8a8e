"""Model cards over the API: the name and precision of the model a crop's hash names.

No database is read (SQLite only): the answers come from the model cards in the model cache
and the shipped model manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lensflow.cloud.api.model_cards import ModelCatalog
from tests.support.api import ApiHarness, running_api

DEMO_TFLITE = "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd"
"""The sha256 of the demo's edge model (the manifest's ssd-mobilenet-v2-coco)."""
XML, BIN = "a1" * 32, "b2" * 32


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(tmp_path / "models"))
    with running_api(f"sqlite:///{tmp_path / 'api.sqlite3'}", tmp_path) as harness:
        yield harness


def _write_card(cache: Path, **card: object) -> None:
    folder = cache / "person" / "export" / "openvino-int8"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_card.json").write_text(json.dumps(card))


def test_the_manifest_names_the_demo_edge_model_and_its_precision(api: ApiHarness) -> None:
    answer = api.get("/v1/models/cards", who="viewer", params={"sha256": DEMO_TFLITE.upper()})

    assert answer.status_code == 200
    assert answer.json() == {
        "sha256": DEMO_TFLITE,
        "name": "ssd-mobilenet-v2-coco",
        "precision": "uint8",
        "format": "ssd-tflite",
        "source": "manifest",
    }


def test_a_card_names_its_artifact_and_every_file_of_it(api: ApiHarness, tmp_path: Path) -> None:
    _write_card(
        tmp_path / "models",
        name="person-detector",
        format="openvino",
        precision="int8",
        artifact_sha256=XML,
        files={"model.xml": XML, "model.bin": BIN},
    )

    for sha in (XML, BIN):
        answer = api.get("/v1/models/cards", who="viewer", params={"sha256": sha})
        assert answer.status_code == 200
        assert answer.json() == {
            "sha256": sha,
            "name": "person-detector",
            "precision": "int8",
            "format": "openvino",
            "source": "card",
        }


def test_an_unknown_hash_is_404_and_a_card_exported_later_is_found(
    api: ApiHarness, tmp_path: Path
) -> None:
    api.app.state.api.models.catalog = ModelCatalog(
        manifest=None, cache=tmp_path / "models", rescan_s=0
    )

    missing = api.get("/v1/models/cards", who="viewer", params={"sha256": XML})
    _write_card(tmp_path / "models", name="late", precision="fp16", artifact_sha256=XML)
    found = api.get("/v1/models/cards", who="viewer", params={"sha256": XML})

    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_model"
    assert found.status_code == 200 and found.json()["name"] == "late"
    assert found.json()["format"] is None  # the card does not say


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"sha256": "abc"}, 422),  # not 64 hex digits
        ({}, 422),  # no hash
    ],
)
def test_a_malformed_request_is_refused(
    api: ApiHarness, params: dict[str, str], status: int
) -> None:
    assert api.get("/v1/models/cards", who="viewer", params=params).status_code == status


def test_a_key_is_needed(api: ApiHarness) -> None:
    answer = api.client.get("/v1/models/cards", params={"sha256": DEMO_TFLITE})

    assert answer.status_code == 401


def test_an_unreadable_card_is_skipped_not_fatal(api: ApiHarness, tmp_path: Path) -> None:
    broken = tmp_path / "models" / "broken" / "model_card.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")

    answer = api.get("/v1/models/cards", who="viewer", params={"sha256": DEMO_TFLITE})

    assert answer.status_code == 200 and answer.json()["source"] == "manifest"
