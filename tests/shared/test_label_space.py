"""Specs of where a node's labels come from: the pipeline file's ``labels:`` and the plugins.

The API builds each node's label schema from these (docs/labels.md): declared labels first,
else the plugin's own classes in model order, else what was observed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lensflow.shared.classifiers.base import BaseClassifier
from lensflow.shared.classifiers.car_make_vit import CarMakeViT
from lensflow.shared.classifiers.edge_detection import EdgeDetection
from lensflow.shared.classifiers.shirt_color import DEFAULT_PALETTE, ShirtColor
from lensflow.shared.classifiers.vehicle_type import TYPES, VehicleType
from lensflow.shared.config.pipeline import PipelineConfig
from lensflow.shared.config.yaml_loader import YamlDocument, load_model
from lensflow.shared.errors import ConfigError

PIPELINE = """\
version: 1
name: falls
pipeline:
  - name: posture
    class: echo
    labels:
      - Normal
      - {name: Fall, key: "5", color: "#CC0000"}
      - " Sitting "
"""


def test_a_node_declares_its_labels_as_names_or_mappings() -> None:
    config = load_model(PipelineConfig, YamlDocument(PIPELINE, path="p.yaml"))

    labels = config.pipeline[0].labels
    assert labels is not None
    assert [(label.name, label.key, label.color) for label in labels] == [
        ("Normal", None, None),
        ("Fall", "5", "#CC0000"),
        ("Sitting", None, None),  # trimmed
    ]


def test_a_node_without_labels_declares_none() -> None:
    text = "pipeline: [{name: a, class: echo}]\n"

    config = load_model(PipelineConfig, YamlDocument(text, path="p.yaml"))

    assert config.pipeline[0].labels is None


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("[Fall, fall]", "labels must differ by more than case"),  # a typo twin
        ('[{name: a, key: "1"}, {name: b, key: "1"}]', "label keys must differ"),
        ('[{name: a, key: "x"}]', "String should match pattern"),  # keys are digits
        ('[{name: a, color: "red"}]', "String should match pattern"),  # colours are #rrggbb
        ('["  "]', "label name must be 1-64 printable characters"),
        (f"[{'x' * 65}]", "at most 64 characters"),
        ("[]", "at least 1 item"),
        ("[{name: a, hotkey: '1'}]", "hotkey: unknown key"),
    ],
)
def test_bad_label_declarations_are_refused_at_their_line(labels: str, expected: str) -> None:
    text = f"pipeline:\n  - name: a\n    class: echo\n    labels: {labels}\n"

    with pytest.raises(ConfigError) as info:
        load_model(PipelineConfig, YamlDocument(text, path="p.yaml"))

    assert expected in str(info.value)
    assert info.value.issues[0].location is not None
    assert info.value.issues[0].location.line == 4


def test_by_default_a_plugin_does_not_know_its_labels() -> None:
    assert BaseClassifier.label_space({}) is None
    assert EdgeDetection.label_space({}) is None  # the API derives them from stored crops


def test_vehicle_types_come_in_their_declared_order() -> None:
    assert VehicleType.label_space({}) == list(TYPES)
    assert VehicleType.label_space({})[:3] == ["car", "sports car", "taxi"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, list(DEFAULT_PALETTE)),  # the default palette, in its order, no "unknown"
        ({"palette": {"teal": [0, 128, 128], "red": [200, 30, 35]}}, ["teal", "red"]),
        ({"palette": {"only": [1, 2, 3]}}, None),  # invalid params: not known
    ],
)
def test_shirt_colours_are_the_palette_names_in_order(
    params: dict[str, Any], expected: list[str] | None
) -> None:
    assert ShirtColor.label_space(params) == expected


def test_car_makes_come_from_the_checkpoint_in_id_order(tmp_path: Path) -> None:
    config = {"id2label": {"1": "bmw", "0": "audi", "2": "volvo"}}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")

    assert CarMakeViT.label_space({"model": str(tmp_path)}) == ["audi", "bmw", "volvo"]


@pytest.mark.parametrize(
    "params",
    [
        {"model": "/nonexistent/car-make"},  # no checkpoint here
        {"model": "org/car-make", "hub": True},  # would have to be downloaded
        {},  # no model named
    ],
)
def test_car_makes_are_unknown_without_a_checkpoint(params: dict[str, Any]) -> None:
    assert CarMakeViT.label_space(params) is None
