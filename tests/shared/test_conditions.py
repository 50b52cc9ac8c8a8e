"""The ``when`` condition language: two spellings compile to one object tree, evaluation is
total, and the string form rejects everything outside its allow-list at load."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
from pathlib import Path as FilePath
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.dag import condition_parse, conditions
from shared.dag.conditions import (
    Always,
    Compare,
    Condition,
    Count,
    Literal,
    Op,
    Path,
    compile_condition,
)
from shared.errors import ConditionError

DETECTIONS = [
    {"class_name": "car", "score": 0.91, "area": 5200.0},
    {"class_name": "person", "score": 0.80, "area": 900.0},
    {"class_name": "person", "score": 0.40, "area": 300.0},
]
CTX: dict[str, Any] = {
    "det": {"classes": ["car", "person"], "count": 3, "boxes": DETECTIONS},
    "col": {"label": "red", "conf": 0.7, "night": False, "note": None},
}
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


BOX = "det.boxes"
OPERATOR_CASES = [  # (a spec that holds on CTX, one that does not)
    ({"contains": ["det.classes", "car"]}, {"contains": ["det.classes", "bus"]}),  # in a list
    ({"not_contains": ["det.classes", "bus"]}, {"not_contains": ["det.classes", "car"]}),
    ({"in": ["col.label", ["red", "blue"]]}, {"in": ["col.label", ["green"]]}),  # one of
    ({"not_in": ["col.label", ["green"]]}, {"not_in": ["col.label", ["red"]]}),
    ({"in": ["col.label", "bored"]}, {"in": ["col.label", "blue"]}),  # in a string: substring
    ("'count' in context['det']", "'speed' in context['det']"),  # in a mapping: a key
    ({"eq": ["col.label", "red"]}, {"eq": ["col.label", "blue"]}),  # strings
    ({"ne": ["col.label", "blue"]}, {"ne": ["col.label", "red"]}),
    ({"eq": ["col.night", False]}, {"eq": ["col.night", True]}),  # booleans
    ({"eq": ["det.classes", ["car", "person"]]}, {"eq": ["det.classes", ["car"]]}),  # lists
    ({"lt": ["det.count", 4]}, {"lt": ["det.count", 3]}),  # numbers
    ({"le": ["det.count", 3]}, {"le": ["det.count", 2]}),
    ({"gt": ["col.conf", 0.5]}, {"gt": ["col.conf", 0.7]}),
    ({"ge": ["col.conf", 0.7]}, {"ge": ["col.conf", 0.71]}),
    ({"lt": ["col.label", "sed"]}, {"gt": ["col.label", "sed"]}),  # strings are ordered too
    ({"exists": "col.label"}, {"exists": "col.note"}),  # present and not null
    ("context['col']['note'] == None", "context['col']['label'] == None"),  # null is None only
    ({"all": [True, {"eq": ["col.label", "red"]}]}, {"all": [True, False]}),
    ({"any": [False, {"eq": ["col.label", "red"]}]}, {"any": [False, False]}),
    ({"not": False}, {"not": True}),
    # at least 2 persons, not 3; without where every item counts
    ({"count": BOX, "where": {"class_name": "person"}, "ge": 2}, {"count": BOX, "ge": 4}),
    ({"count": BOX, "eq": 3}, {"count": BOX, "where": {"class_name": "person"}, "ge": 3}),
    # several tests on one field must all hold
    ({"count": BOX, "where": {"score": {"gt": 0.5, "lt": 0.9}}, "eq": 1}, {"count": BOX, "lt": 3}),
    # some car scoring >= 0.5 with area >= 4000; no person that big
    (
        {"some": BOX, "where": {"class_name": "car", "score": {"ge": 0.5}, "area": {"ge": 4000}}},
        {"some": BOX, "where": {"class_name": "person", "area": {"ge": 4000}}},
    ),
    # where tests use the operator table; items that are not mappings never match
    (
        {"some": BOX, "where": {"class_name": {"in": ["car"]}}},
        {"some": "det.classes", "where": {"x": 1}},
    ),
    ({"some": BOX}, {"some": "det.nothing"}),  # without where: the list is not empty
]


@pytest.mark.parametrize(("true_spec", "false_spec"), OPERATOR_CASES)
def test_each_operator_is_true_and_false_when_it_should_be(true_spec: Any, false_spec: Any) -> None:
    assert holds(true_spec) is True
    assert holds(false_spec) is False


MISSING_CASES = [
    # every kind of comparison, on data that is not there
    "'car' in context['det']['classes']",
    "'car' not in context['det']['classes']",
    "context['det']['count'] != 2",
    "context['det']['count'] >= 0",
    "len(context['det']['boxes']) == 0",
    "context['col']['label'] not in ['red']",
    "context['col']['label'] != None",
    "context['col']['label'] == None",
]


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


MISMATCH_CASES = [
    # a string is not ordered against a number
    ({"gt": ["col.label", 1]}, CTX),
    # a null never compares with a value
    ({"ne": ["col.note", "red"]}, CTX),
    ({"lt": ["col.note", 1]}, CTX),
    # True is not 1, either way round
    ({"eq": ["col.night", 0]}, CTX),
    ({"in": ["x.flag", [1, 2]]}, {"x": {"flag": True}}),
    # a kind mismatch makes != false too
    ({"ne": ["col.label", 3]}, CTX),
    # an index past the end; a key into a list
    ({"gt": ["det.boxes.9.score", 0]}, CTX),
    ({"eq": ["det.classes.name", "car"]}, CTX),
    # a count of something that is not a list
    ({"count": "col.label", "ge": 0}, CTX),
]


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


REJECTED = [
    # the classic: reach the import machinery through a dunder builtin
    ("__import__('os').system('id')", "dunder name '__import__'"),
    # a dunder attribute, a dunder key, the subclass walk
    ("context.__class__", "dunder name '__class__'"),
    ("context['__class__']", "dunder name '__class__'"),
    ("().__class__.__bases__[0].__subclasses__()", "dunder name"),
    # attribute access without a dunder
    ("context.keys", "attribute access"),
    # comprehensions, generators, lambdas
    ("[x for x in ()]", "comprehension"),
    ("any(x for x in context)", "generator expression"),
    ("(lambda: 1)()", "lambda"),
    # calls other than len(<one context path>)
    ("open('/etc/passwd')", "function call open()"),
    ("globals()", "function call globals()"),
    ("len(context['a']['b'], 2) > 0", "len() takes exactly one"),
    ("len(1) > 0", "len() takes a context path"),
    # names other than context
    ("x == 1", "name 'x'"),
    # a ternary, an f-string, the walrus, arithmetic, slices, starred, displays, is, yield
    ("context['a'] if True else 1", "conditional expression"),
    ("f'{context}'", "f-string"),
    ("(x := 1)", "assignment expression (:=)"),
    ("1 + 1", "arithmetic (+)"),
    ("context['a']['n'] * 2 > 1", "arithmetic (*)"),
    ("context['a'][1:2] == []", "slice"),
    ("[*context] == []", "starred"),
    ("{'a': 1} == context['a']", "dict or set display"),
    ("context['a']['b'] is None", "'is' comparison"),
    ("(yield)", "await / yield"),
    # a statement is a syntax error in an expression, reported with its column
    ("import os", "invalid condition syntax at column 1"),
    ("context['a'] ==", "invalid condition syntax"),
    # too long, too deeply nested, too many parts
    ("x" * 100_000, "the limit is 2000"),
    ("(" * 500 + "True" + ")" * 500, "too many nested parentheses"),
    ("not " * 100 + "True", "nested more than"),
    ("context['a']['b'] in [" + "1," * 900 + "]", "too complex"),
    # values are not conditions; a comparison is one context value against constants
    ("context['a']['flag']", "is a value, not a condition"),
    ("1 == 1", "not two context values or two constants"),
    ("context['a']['x'] == context['b']['y']", "not two context values"),
    ("context == 1", "context must be used as context['node']"),
    # path keys are constants, the first one a node name
    ("context[0] == 1", "first key after context must be a node name"),
    ("context['a'][1.5] == 1", "string or integer constant"),
    ("context['a'][True] == 1", "string or integer constant"),
    # constants that suit the operator
    ("context['a']['n'] > True", "gt compares with a number or a string"),
    ("context['a']['n'] in 3", "in looks in a list"),
    ("b'x' == context['a']['n']", "expected a constant"),
    ("'x' in len(context['a']['n'])", "len(...) is a number"),
    # nothing at all, and a null byte
    ("   ", "empty"),
    ("context['a']\x00", "cannot"),
]


@pytest.mark.parametrize(("text", "fragment"), REJECTED)
def test_disallowed_string_forms_are_rejected_at_compile(text: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(text)
    assert fragment in str(info.value)


def test_the_error_gives_the_column_of_the_offending_construct() -> None:
    with pytest.raises(ConditionError, match=r"lambda .* \(at column 23\)"):
        compile_condition("context['a']['b'] == (lambda: 1)()")


def test_a_rejected_payload_never_runs(tmp_path: FilePath) -> None:
    canary = tmp_path / "ran"
    for payload in [
        f"__import__('os').system('touch {canary}')",
        f"open('{canary}', 'w').write('x')",
        f"[open('{canary}', 'w') for _ in [1]]",
    ]:
        with pytest.raises(ConditionError):
            compile_condition(payload)
    assert not canary.exists()


STRUCTURED_REJECTED = [
    # an unknown operator; two operators in one mapping
    ({"gte": ["a.b", 1]}, "unknown condition 'gte'"),
    ({"eq": ["a.b", 1], "ne": ["a.b", 2]}, "expected one key"),
    # all / any take a list, comparisons a [PATH, VALUE] pair
    ({"all": []}, "all: expected a list of conditions"),
    ({"gt": "a.b"}, "gt: expected [PATH, VALUE]"),
    # a PATH starts with a node name and has no dunder, bracket or empty keys
    ({"eq": ["0.a", 1]}, "eq[0]: a path starts with a node name"),
    ({"eq": ["a.__class__", 1]}, "dunder key '__class__'"),
    ({"eq": ["a['b']", 1]}, "dotted keys may not be empty or hold blanks, brackets or quotes"),
    ({"eq": ["a..b", 1]}, "a PATH looks like"),
    # a where field with no test
    ({"some": "a.b", "where": {"score": {}}}, "where.score.eq: expected a constant"),
    # constants only, suited to the operator
    ({"eq": ["a.b", {"x": 1}]}, "eq: expected a constant"),
    ({"gt": ["a.b", None]}, "gt compares with a number or a string"),
    ({"in": ["a.b", 3]}, "in looks in a list"),
    ({"contains": ["a.b", [1]]}, "contains looks for one constant"),
    # count takes exactly one comparison; where maps item fields to tests
    ({"count": "a.b"}, "expected {count: PATH"),
    ({"count": "a.b", "ge": 1, "le": 3}, "expected {count: PATH"),
    ({"some": "a.b", "where": {"score": {"gte": 1}}}, "where.score.gte: unknown operator 'gte'"),
    ({"some": "a.b", "where": []}, "where: expected item fields"),
    # a string inside the structured form is compiled there, and located
    ({"any": [True, "len(context)"]}, "any[1]: 'len(context)' is a value"),
    # not a condition at all
    (3, "expected a condition"),
    ([True], "expected a condition"),
    ({}, "expected a condition"),
]


@pytest.mark.parametrize(("spec", "fragment"), STRUCTURED_REJECTED)
def test_invalid_structured_forms_are_rejected_with_their_location(
    spec: Any, fragment: str
) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(spec)
    assert fragment in str(info.value)


def test_a_yaml_alias_bomb_stops_at_the_size_limit() -> None:
    spec: Any = {"eq": ["a.b", 1]}
    for _ in range(30):  # 2**30 leaves once expanded; YAML aliases share one object per level
        spec = {"all": [spec, spec]}
    with pytest.raises(ConditionError, match="too large"):
        compile_condition(spec)


def test_a_self_referencing_structure_stops_at_the_depth_limit() -> None:
    spec: dict[str, Any] = {}
    spec["not"] = spec
    with pytest.raises(ConditionError, match="too large"):
        compile_condition(spec)


def test_count_where_tests_are_comparisons_on_item_fields() -> None:
    where = (Compare(Op.EQ, Path(("kind",)), Literal("a")),)
    expected = Compare(Op.GE, Count(Path(("d", "items")), where), Literal(1))
    assert compile_condition({"count": "d.items", "where": {"kind": "a"}, "ge": 1}) == expected
    assert compile_condition({"some": "d.items", "where": {"kind": "a"}}) == expected


@pytest.mark.parametrize("module", [conditions, condition_parse])
def test_the_condition_modules_never_run_code(module: Any) -> None:
    tree = ast.parse(inspect.getsource(module))
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & {"eval", "exec", "compile", "getattr", "setattr", "__import__"}


TOKENS = (  # noqa: SIM905 - one line of tokens reads better than fifty
    "context|['det']|['count']|[0]|[-1]|len(|)|(|[|]| and | or |not | in | not in |==|!=|<|>=|"
    "'car'|3|0.5|True|None|,|.|__class__|lambda|:|+|*|if|else|f'|'|x|for|import|__import__|"
    "eval|exec|:=|\\|\n|#|{|}"
).split("|")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300) | st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_compile_raises_only_condition_error_and_never_executes(text: str) -> None:
    forbidden = mock.Mock(side_effect=AssertionError("config text was executed"))
    with mock.patch("builtins.eval", forbidden), mock.patch("builtins.exec", forbidden):
        try:
            condition = compile_condition(text)
        except ConditionError:
            return
    assert isinstance(condition.evaluate(CTX), bool)
    assert condition.explain({}).startswith("condition ")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(["all", "any", "not", "exists", "in", "gt", "count", "some", "where"])
SPECS = st.recursive(
    JSON,
    lambda inner: (
        st.dictionaries(KEYS, inner, min_size=1, max_size=3) | st.lists(inner, max_size=3)
    ),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None)
@given(SPECS)
def test_arbitrary_structured_data_raises_only_condition_error(spec: Any) -> None:
    with contextlib.suppress(ConditionError):
        assert isinstance(compile_condition(spec), Condition)


SPECS_SEEN: list[Any] = [*MISSING_CASES, *(spec for spec, _ in MISMATCH_CASES)]
COMPILED = [compile_condition(spec) for spec in SPECS_SEEN + [s for p in OPERATOR_CASES for s in p]]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["det", "col", "x"]), JSON, max_size=3))
def test_evaluating_any_context_never_raises(context: dict[str, Any]) -> None:
    for condition in COMPILED:
        assert isinstance(condition.evaluate(context), bool)
        assert condition.explain(context).startswith("condition ")
