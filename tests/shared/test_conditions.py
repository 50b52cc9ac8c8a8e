"""The ``when`` condition language: two spellings compile to one object tree, and evaluation is
total.

What the string form rejects at load, and the fuzz properties, are in test_condition_safety.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from lensflow.shared.dag.condition_compile import compile_condition
from lensflow.shared.dag.conditions import Always, Compare, Literal, Op, Path
from tests.support.conditions_data import CTX, MISMATCH_CASES, MISSING_CASES, OPERATOR_CASES

DESIGN = "'car' in context['object_detection']['detected_classes']"


def holds(spec: Any, context: dict[str, Any] = CTX) -> bool:
    return compile_condition(spec).evaluate(context)


def test_the_designs_string_form_compiles_to_small_frozen_data() -> None:
    condition = compile_condition(DESIGN)
    assert condition == Compare(
        Op.IN, Literal("car"), Path(("object_detection", "detected_classes"))
    )
    assert condition == compile_condition(
        {"contains": ["object_detection.detected_classes", "car"]}
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        condition.op = Op.NOT_IN  # type: ignore[misc]
    assert condition.evaluate({"object_detection": {"detected_classes": ["car"]}})


SPELLINGS = [
    # negated membership is a comparison of its own, not {not: ...}
    ("'bus' not in context['det']['classes']", {"not_contains": ["det.classes", "bus"]}),
    # the value at a path is one of several constants (list or tuple)
    ("context['col']['label'] in ['red', 'blue']", {"in": ["col.label", ["red", "blue"]]}),
    ("context['col']['label'] not in ('red', 'blue')", {"not_in": ["col.label", ["red", "blue"]]}),
    # equality with a string, inequality with a number
    ("context['col']['label'] == 'red'", {"eq": ["col.label", "red"]}),
    ("context['det']['count'] != 2", {"ne": ["det.count", 2]}),
    # each ordering operator
    ("context['det']['count'] < 4", {"lt": ["det.count", 4]}),
    ("context['det']['count'] <= 3", {"le": ["det.count", 3]}),
    ("context['det']['count'] > 2.5", {"gt": ["det.count", 2.5]}),
    ("context['det']['count'] >= 3", {"ge": ["det.count", 3]}),
    # a constant on the left is flipped so that the context value comes first
    ("2 <= context['det']['count']", {"ge": ["det.count", 2]}),
    # integer keys index lists; negative ones count from the end
    ("context['det']['boxes'][0]['score'] >= 0.5", {"ge": ["det.boxes.0.score", 0.5]}),
    ("context['det']['boxes'][-1]['area'] < 500", {"lt": ["det.boxes.-1.area", 500]}),
    # len() of a list is a count
    ("len(context['det']['boxes']) >= 2", {"count": "det.boxes", "ge": 2}),
    # != None means present and not null, which is what exists says
    ("context['col']['label'] != None", {"exists": "col.label"}),
    # and / or / not are all / any / not
    (
        "'car' in context['det']['classes'] and not context['col']['label'] == 'blue'",
        {"all": [{"contains": ["det.classes", "car"]}, {"not": {"eq": ["col.label", "blue"]}}]},
    ),
    (
        "context['det']['count'] > 5 or context['col']['conf'] >= 0.5",
        {"any": [{"gt": ["det.count", 5]}, {"ge": ["col.conf", 0.5]}]},
    ),
    # a chained comparison is the conjunction of its pairs
    (
        "0.5 < context['col']['conf'] <= 0.9",
        {"all": [{"gt": ["col.conf", 0.5]}, {"le": ["col.conf", 0.9]}]},
    ),
    # a key holding a dot is reachable with the list form of PATH
    ("context['col']['a.b'] == 1", {"eq": [["col", "a.b"], 1]}),
    # the constants
    ("True", True),
    ("False", False),
]


@pytest.mark.parametrize(("text", "structured"), SPELLINGS)
def test_string_and_structured_forms_compile_to_equal_objects(text: str, structured: Any) -> None:
    assert compile_condition(text) == compile_condition(structured)
    assert hash(compile_condition(text)) == hash(compile_condition(structured))


@pytest.mark.parametrize(("text", "structured"), SPELLINGS)
@pytest.mark.parametrize("context", [CTX, {}, {"det": {"count": 1}, "col": {"conf": 0.6}}])
def test_string_and_structured_forms_evaluate_the_same(
    text: str, structured: Any, context: dict[str, Any]
) -> None:
    assert holds(text, context) == holds(structured, context)


def test_no_condition_is_always_true_and_a_compiled_one_passes_through() -> None:
    assert compile_condition(None) == Always(True)
    compiled = compile_condition({"exists": "col.label"})
    assert compile_condition(compiled) is compiled


def test_constants_of_different_types_make_different_conditions() -> None:
    assert compile_condition({"eq": ["a.b", True]}) != compile_condition({"eq": ["a.b", 1]})


@pytest.mark.parametrize(("true_spec", "false_spec"), OPERATOR_CASES)
def test_each_operator_is_true_and_false_when_it_should_be(true_spec: Any, false_spec: Any) -> None:
    assert holds(true_spec) is True
    assert holds(false_spec) is False


@pytest.mark.parametrize("text", MISSING_CASES)
@pytest.mark.parametrize(
    "context",
    [
        {},  # the upstream nodes were skipped: their outputs are not in the context
        {"det": {}, "col": {}},  # they ran without the key
        {"det": None, "col": [1]},  # their outputs have another shape
    ],
)
def test_missing_data_makes_a_comparison_false(text: str, context: dict[str, Any]) -> None:
    assert holds(text, context) is False


def test_not_negates_a_whole_condition_so_missing_data_makes_it_true() -> None:
    assert holds({"not": {"contains": ["det.classes", "car"]}}, {}) is True


@pytest.mark.parametrize(("spec", "context"), MISMATCH_CASES)
def test_type_mismatch_makes_a_comparison_false(spec: Any, context: dict[str, Any]) -> None:
    assert holds(spec, context) is False


def test_numpy_scalars_from_upstream_outputs_compare_as_numbers() -> None:
    context = {"d": {"score": np.float32(0.9), "n": np.int64(2)}}
    assert holds("context['d']['score'] >= 0.5 and context['d']['n'] == 2", context)


def test_self_referencing_data_breaks_neither_evaluation_nor_explanation() -> None:
    loop: list[Any] = []
    loop.append(loop)
    condition = compile_condition({"eq": ["d.loop", [1]]})
    assert condition.evaluate({"d": {"loop": loop}}) is False
    assert condition.explain({"d": {"loop": loop}}).startswith("condition false")


@pytest.mark.parametrize(
    ("spec", "nodes"),
    [
        (True, set()),  # a constant reads nothing
        (DESIGN, {"object_detection"}),  # the first key of a path
        ({"any": [{"exists": "a.x"}, {"not": {"eq": ["b.y", 1]}}]}, {"a", "b"}),  # a union
        ({"some": "det.boxes", "where": {"class_name": "car"}}, {"det"}),  # not the item fields
    ],
)
def test_references_name_the_upstream_nodes(spec: Any, nodes: set[str]) -> None:
    assert compile_condition(spec).references() == nodes


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        # a membership and a filtered count
        (
            f"{DESIGN} and len(context['object_detection']['detections']) >= 2",
            "'car' in object_detection.detected_classes "
            "and count(object_detection.detections) >= 2",
        ),
        (
            {"count": "det.boxes", "where": {"class_name": "person"}, "ge": 2},
            "count(det.boxes where class_name == 'person') >= 2",
        ),
        # or inside and is parenthesised; not wraps a comparison
        (
            {"all": [{"any": [True, False]}, {"not": {"in": ["a.b", ["x", "y"]]}}]},
            "(true or false) and not (a.b in ['x', 'y'])",
        ),
        # unusual keys are quoted, and so are string keys that look like integers
        ({"eq": [["n", "a b", "0", 1], 2]}, "n['a b']['0'].1 == 2"),
    ],
)
def test_describe_is_readable(spec: Any, text: str) -> None:
    assert compile_condition(spec).describe() == str(compile_condition(spec)) == text


def test_explain_names_the_false_part_and_the_value_it_saw() -> None:
    condition = compile_condition(f"len(context['det']['boxes']) >= 1 and {DESIGN}")
    context = {"det": {"boxes": [{}]}, "object_detection": {"detected_classes": ["person"]}}
    assert condition.explain(context) == (
        "condition false: 'car' in object_detection.detected_classes (value: ['person'])"
    )
    assert condition.explain({}) == "condition false: count(det.boxes) >= 1 (value: missing)"
    assert compile_condition(True).explain({}) == "condition true: true"


def test_explain_lists_every_alternative_of_a_false_any() -> None:
    condition = compile_condition({"any": [{"eq": ["a.x", 1]}, {"exists": "b.y"}]})
    assert condition.explain({"a": {"x": 2}}) == (
        "condition false: none of: a.x == 1 (value: 2); b.y != None (value: missing)"
    )
