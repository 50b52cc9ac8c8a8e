"""API specs: the detection's label schema comes from the edge model's card.

The newest crop's ``provenance.model_sha256`` names the edge model; when a card names it (the
model manifest with its labels file or class list, an exported artifact's card, a registry
bundle or a file in one), the detection's labels are the model's classes in model order.
Without one, the classes seen in the crops (``observed``), rebuilt once a card is known.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lensflow.cloud.api.model_cards import ModelCatalog
from lensflow.cloud.storage import ResultStore, create_engine_for
from lensflow.shared.detectors.labels import read_labels
from lensflow.shared.model_bundle import sha256_file
from tests.cloud.test_api_model_bundles import TAR, packed
from tests.support.api import ApiHarness, running_api, seed, store_crop
from tests.support.review_api import ReviewApi

ROOT = Path(__file__).resolve().parents[2]
COCO_FIRST_NINE = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
COCO_FIRST_NINE.append("boat")
YOLO_PERSON = "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d"
"""The manifest's yolov8s-person (``classes: [Normal, Fall]``)."""
FORKLIFTS = {"0": "person", "1": "forklift", "2": "pallet"}
"""The classes of the registry bundle the tests push."""


def labels(schema: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    return [(label["id"], label["name"], label["key"]) for label in schema["labels"]]


def detection_schema(api: ApiHarness) -> dict[str, Any]:
    response = api.get("/v1/label-schemas/detection", who="viewer")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(tmp_path / "models"))  # no card in it
    with running_api(f"sqlite:///{tmp_path / 'api.sqlite3'}", tmp_path) as harness:
        yield harness


def test_a_fresh_api_over_coco_ssd_crops_offers_the_80_coco_classes_in_model_order(
    ssd_coco_tflite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the API process's model cache holds the demo's COCO SSD and its labels file
    cache = tmp_path / "cache"
    shutil.copytree(ssd_coco_tflite.parent, cache / "ssd-mobilenet-v2-coco")
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(cache))
    coco = read_labels(next(ssd_coco_tflite.parent.glob("*labels*.txt")))
    with ReviewApi(tmp_path / "api", search=False) as api:
        # and crops of three classes from that model (its file's sha256 in their provenance)
        engine = create_engine_for(api.url)
        sha = sha256_file(ssd_coco_tflite)
        for crop_id, (name, class_id) in enumerate([("bus", 5), ("tie", 27), ("person", 0)]):
            store_crop(ResultStore(engine), api.crops, f"c{crop_id}", class_name=name,
                       class_id=class_id, model_sha256=sha)  # fmt: skip
        engine.dispose()
        # when the review app asks for the detection's schema
        headers = {"Authorization": f"Bearer {api.tokens['viewer']}"}
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=10) as client:
            schema = client.get("/v1/label-schemas/detection").json()

    # then it is the model's 80 classes, with its ids, and keys 1-9 on the first nine
    assert (schema["version"], schema["source"]) == (1, "model")
    assert [(label["id"], label["name"]) for label in schema["labels"]] == sorted(coco.items())
    assert len(schema["labels"]) == 80
    keyed = [(label["key"], label["name"]) for label in schema["labels"] if label["key"]]
    assert keyed == list(zip("123456789", COCO_FIRST_NINE, strict=True))


def test_a_manifest_class_list_is_the_detection_schema(api: ApiHarness) -> None:
    seed(api, "fall", class_name="Fall", class_id=1, model_sha256=YOLO_PERSON)

    schema = detection_schema(api)

    assert schema["source"] == "model"
    assert labels(schema) == [(0, "Normal", "1"), (1, "Fall", "2")]


def test_an_unknown_model_gives_the_classes_seen_as_observed(api: ApiHarness) -> None:
    seed(api, "t", class_name="truck", class_id=7)  # "ab" * 32: no card names it
    seed(api, "p", class_name="person", class_id=0)

    schema = detection_schema(api)

    assert schema["source"] == "observed"
    assert labels(schema) == [(0, "person", "1"), (7, "truck", "2")]


def test_an_observed_schema_is_rebuilt_from_a_bundle_pushed_later_keeping_its_keys(
    api: ApiHarness, tmp_path: Path
) -> None:
    # given crops of a bundle the registry does not have yet, after one of an unknown model
    sha, body = packed(tmp_path, name="forklifts", class_names=FORKLIFTS)
    seed(api, "dog", class_name="dog", class_id=16)
    seed(api, "pallet", class_name="pallet", class_id=2, model_sha256=sha)
    seed(api, "person", class_name="person", class_id=0, model_sha256=sha)
    observed = detection_schema(api)
    # when the bundle is pushed
    pushed = api.client.post("/v1/models", content=body, headers=api.headers("operator") | TAR)
    rebuilt = detection_schema(api)

    assert pushed.status_code == 201, pushed.text
    assert (observed["source"], rebuilt["source"], rebuilt["version"]) == ("observed", "model", 2)
    assert labels(observed) == [(0, "person", "1"), (2, "pallet", "2"), (16, "dog", "3")]
    # then the card's classes in its order; every label seen keeps its key, forklift the next
    assert labels(rebuilt) == [
        (0, "person", "1"),
        (1, "forklift", "4"),
        (2, "pallet", "2"),
        (16, "dog", "3"),
    ]
    colours = {label["name"]: label["color"] for label in observed["labels"]}
    assert {lb["name"]: lb["color"] for lb in rebuilt["labels"] if lb["name"] in colours} == colours


def test_a_model_swapped_in_appends_its_classes_and_moves_no_key(api: ApiHarness) -> None:
    seed(api, "fall", class_name="Fall", class_id=1, model_sha256=YOLO_PERSON)
    first = detection_schema(api)
    seed(api, "bus", class_name="bus", class_id=5)  # an unknown model now: seen classes

    second = detection_schema(api)

    assert second["version"] == 2
    assert labels(second) == [*labels(first), (5, "bus", "3")]


@pytest.mark.parametrize(
    "which",
    [
        "bundle",  # the bundle's sha256: what an edge that downloaded it reports
        "file",  # the model file inside it
    ],
)
def test_the_model_cards_route_names_registry_bundles_and_their_files(
    api: ApiHarness, tmp_path: Path, which: str
) -> None:
    sha, body = packed(tmp_path, name="forklifts", precision="int8")
    card = json.loads((tmp_path / "artifact" / "model_card.json").read_text())
    asked = sha if which == "bundle" else card["files"]["model.onnx"]
    missing = api.get("/v1/models/cards", who="viewer", params={"sha256": asked})
    api.client.post("/v1/models", content=body, headers=api.headers("operator") | TAR)

    answer = api.get("/v1/models/cards", who="viewer", params={"sha256": asked})

    assert missing.status_code == 404
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "sha256": asked,
        "name": "forklifts",
        "precision": "int8",
        "format": "onnx",
        "source": "bundle",
    }


def test_a_labels_file_that_does_not_hash_as_declared_gives_no_classes(tmp_path: Path) -> None:
    manifest = tmp_path / "models.yaml"
    files = {"labels": {"source": "file:labels.txt", "sha256": "0" * 64}}
    entry = {"source": "file:m.tflite", "sha256": "1" * 64, "kind": "ssd-tflite", "files": files}
    manifest.write_text(json.dumps({"models": {"ssd": entry}}))
    (tmp_path / "cache" / "ssd").mkdir(parents=True)
    (tmp_path / "cache" / "ssd" / "labels.txt").write_text("0 person\n1 car\n")

    info = ModelCatalog(manifest=manifest, cache=tmp_path / "cache").lookup("1" * 64)

    assert info is not None and info.name == "ssd"
    assert info.classes == ()  # a file not as published is not trusted
