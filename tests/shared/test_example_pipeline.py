"""The design's example pipeline (configs/pipeline.yaml) on real photos, with test classifiers.

object_detection -> car_make_classification when a car was detected;
object_detection -> tshirt_color_classification when a person was;
object_detection -> vehicle_type_classification when a car, truck or bus was;
object_detection -> embedding for every crop.
The crops are cut from the real photos shipped with ultralytics at the boxes an edge detector
reports for them; the test classifiers compute from the pixels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import Pipeline

# (image, class the edge reported, box in frame pixels, nodes expected to run)
CROPS = [
    # the bus in bus.jpg: only the vehicle type runs
    ("bus", "bus", (17, 230, 801, 768), {"vehicle_type_classification"}),
    # the man on the left of bus.jpg: shirt colour runs
    ("bus", "person", (48, 398, 245, 902), {"tshirt_color_classification"}),
    # Zidane, right: shirt colour runs
    ("zidane", "person", (743, 48, 1141, 720), {"tshirt_color_classification"}),
    # the tie in zidane.jpg: neither branch
    ("zidane", "tie", (437, 437, 524, 714), set()),
    # the bus front reported as a car (a detector's confusion): car make and vehicle type run
    ("bus", "car", (17, 230, 400, 768), {"car_make_classification", "vehicle_type_classification"}),
]
BRANCHES = {"car_make_classification", "tshirt_color_classification", "vehicle_type_classification"}


@pytest.fixture
def pipeline(repo_root: Path, registry: PluginRegistry) -> Pipeline:
    return Pipeline(load_pipeline(repo_root / "configs" / "pipeline.yaml", registry=registry))


def test_example_pipeline_loads_in_design_order(pipeline: Pipeline) -> None:
    assert [n.name for n in pipeline.compiled.nodes] == [
        "object_detection",
        "car_make_classification",
        "tshirt_color_classification",
        "vehicle_type_classification",
        "embedding",
    ]
    condition = pipeline.compiled.node("car_make_classification").condition
    assert condition.references() == {"object_detection"}


def test_branches_run_or_skip_per_crop(pipeline: Pipeline, sample_images: dict[str, Image]) -> None:
    crops, inputs = [], []
    for image, class_name, (x1, y1, x2, y2), _ in CROPS:
        crops.append(sample_images[image][y1:y2, x1:x2])
        inputs.append(
            {"detection": {"class_name": class_name, "score": 0.9, "box": [x1, y1, x2, y2]}}
        )
    results = pipeline.run_batch(crops, inputs=inputs)
    for (image, class_name, _, expected), result in zip(CROPS, results, strict=True):
        ran = {name for name in BRANCHES if result.nodes[name].status == "ok"}
        assert ran == expected, (image, class_name)
        skipped = BRANCHES - expected
        assert all(result.nodes[name].status == "skipped" for name in skipped)
        assert result.nodes["object_detection"].output["detected_classes"] == [class_name]
        assert result.nodes["embedding"].status == "ok"  # every crop gets an embedding


def test_shirt_colour_comes_from_the_pixels(
    pipeline: Pipeline, sample_images: dict[str, Image]
) -> None:
    # Zidane's jacket is dark; the test classifier averages the torso region.
    crop = sample_images["zidane"][48:720, 743:1141]
    result = pipeline.run(crop, inputs={"detection": {"class_name": "person", "score": 0.9}})
    assert result.nodes["tshirt_color_classification"].output["color"] in {"black", "grey"}
