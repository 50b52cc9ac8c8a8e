"""The vehicle_type plugin on the real ImageNet EfficientNet-Lite0 and real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.classifiers.vehicle_type import (
    TYPES,
    VEHICLE_TYPES,
    VehicleType,
    VehicleTypeParams,
    imagenet_labels,
)
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import Pipeline
from tests.support.plugins import BrightnessCarMake

pytestmark = pytest.mark.integration

BUS_BOX = (17, 230, 801, 768)  # x1, y1, x2, y2 of the bus in bus.jpg


@pytest.fixture(scope="module")
def plugin(effnet_features_onnx: Path) -> VehicleType:
    return VehicleType(VehicleTypeParams(model=str(effnet_features_onnx)))


@pytest.fixture(scope="module")
def crops(sample_images: dict[str, Image]) -> dict[str, Image]:
    bus, zidane = sample_images["bus"], sample_images["zidane"]
    x1, y1, x2, y2 = BUS_BOX
    return {
        "bus": bus[y1:y2, x1:x2],
        "bus photo": bus,
        "man": bus[398:902, 48:245],
        "zidane": zidane[48:720, 743:1141],
        "tie": zidane[437:714, 437:524],
        "street": bus[:200, :300],
    }


def test_the_bus_region_is_a_bus(plugin: VehicleType, crops: dict[str, Image]) -> None:
    # given the bus cut from bus.jpg at its box
    # when it is classified
    result = plugin.process(crops["bus"], {})
    # then its type is bus, it is a vehicle, and ImageNet's own best class is a bus class
    assert result["type"] == "bus"
    assert result["is_vehicle"] is True
    assert result["score"] > 0.5
    assert result["top_class"] in {"minibus", "school bus", "trolleybus"}
    assert 0.0 < result["top_class_score"] <= result["vehicle_score"] <= 1.0


def test_people_are_not_vehicles(plugin: VehicleType, crops: dict[str, Image]) -> None:
    for name in ("man", "zidane"):
        result = plugin.process(crops[name], {})
        assert result["is_vehicle"] is False, name
        assert result["vehicle_score"] < 0.1, name
        assert result["type"] in TYPES  # the least unlikely type, flagged as not a vehicle


def test_a_batch_gives_what_one_by_one_gives(plugin: VehicleType, crops: dict[str, Image]) -> None:
    images = list(crops.values())
    batched = plugin.process_batch(images, [{} for _ in images])
    singles = [plugin.process(image, {}) for image in images]
    for got, want in zip(batched, singles, strict=True):
        assert (got["type"], got["top_class"], got["is_vehicle"]) == (
            want["type"],
            want["top_class"],
            want["is_vehicle"],
        )
        for key in ("score", "vehicle_score", "top_class_score"):
            assert got[key] == pytest.approx(want[key], abs=1e-4)


def test_outputs_are_declared_bounded_and_json(
    plugin: VehicleType, crops: dict[str, Image]
) -> None:
    for result in plugin.process_batch(list(crops.values()), [{}] * len(crops)):
        assert set(result) == set(VehicleType.outputs)
        assert 0.0 <= result["score"] <= 1.0 and 0.0 <= result["vehicle_score"] <= 1.0
        json.dumps(result)  # the worker stores it as JSON


def test_the_threshold_decides_is_vehicle(
    effnet_features_onnx: Path, crops: dict[str, Image]
) -> None:
    strict = VehicleType(VehicleTypeParams(model=str(effnet_features_onnx), min_vehicle_score=1.0))
    assert strict.process(crops["bus"], {})["is_vehicle"] is False


def test_the_type_table_names_imagenet_vehicle_classes() -> None:
    # the table's indices must point at the classes its comments name
    labels = imagenet_labels()
    assert len(labels) == 1000
    expected = {
        779: "school bus",
        874: "trolleybus",
        654: "minibus",
        867: "trailer truck",
        717: "pickup",
        468: "cab",
        817: "sports car",
        656: "minivan",
        407: "ambulance",
        734: "police van",
        671: "mountain bike",
        670: "motor scooter",
    }
    assert {index: labels[index] for index in expected} == expected
    assert {VEHICLE_TYPES[i] for i in (779, 874, 654)} == {"bus"}
    assert {"car", "sports car", "van", "pickup", "bus", "truck", "taxi"} <= set(TYPES)


def test_discovery_registers_it() -> None:
    assert PluginRegistry().discover().resolve("vehicle_type") is VehicleType


def test_the_example_pipeline_runs_the_real_vehicle_type_and_embeddings(
    repo_root: Path,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    sample_images: dict[str, Image],
) -> None:
    # given configs/pipeline.yaml with the real plugins (only car make, which has no real
    # weights here, faked), and the default model found in the project's cache
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("LENSFLOW_MODEL_CACHE", str(model_cache))
    registry = PluginRegistry(dict(default_registry().plugins), models=ManifestModelStore())
    registry.register(BrightnessCarMake, replace=True)
    pipeline = Pipeline(load_pipeline(repo_root / "configs" / "pipeline.yaml", registry=registry))
    # when the bus and a man arrive as the edge reported them
    x1, y1, x2, y2 = BUS_BOX
    crops = [sample_images["bus"][y1:y2, x1:x2], sample_images["bus"][398:902, 48:245]]
    inputs = [{"detection": {"class_name": name, "score": 0.9}} for name in ("bus", "person")]
    bus, man = pipeline.run_batch(crops, inputs=inputs)
    # then the bus gets a vehicle type, the man a shirt colour, and both an embedding
    assert bus.nodes["vehicle_type_classification"].output["type"] == "bus"
    assert man.nodes["vehicle_type_classification"].status == "skipped"
    assert man.nodes["tshirt_color_classification"].status == "ok"
    for result in (bus, man):
        assert result.nodes["embedding"].output["dim"] == 1280
