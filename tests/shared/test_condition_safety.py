"""The ``when`` condition language is safe: the string form rejects everything outside its
allow-list at load, never runs the text it is given, and compiling or evaluating arbitrary
input raises nothing but ConditionError."""

from __future__ import annotations

import ast
import contextlib
import inspect
from pathlib import Path as FilePath
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensflow.shared.dag import condition_compile, condition_parse, conditions
from lensflow.shared.dag.condition_compile import compile_condition
from lensflow.shared.dag.conditions import (
    Compare,
    Condition,
    Count,
    Literal,
    Op,
    Path,
)
from lensflow.shared.errors import ConditionError
from tests.support.conditions_data import CTX, MISMATCH_CASES, MISSING_CASES, OPERATOR_CASES
from tests.support.hypothesis_profiles import examples

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


@pytest.mark.parametrize("module", [conditions, condition_parse, condition_compile])
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


@settings(max_examples=examples(400), deadline=None)
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


@settings(max_examples=examples(400), deadline=None)
@given(SPECS)
def test_arbitrary_structured_data_raises_only_condition_error(spec: Any) -> None:
    with contextlib.suppress(ConditionError):
        assert isinstance(compile_condition(spec), Condition)


SPECS_SEEN: list[Any] = [*MISSING_CASES, *(spec for spec, _ in MISMATCH_CASES)]
COMPILED = [compile_condition(spec) for spec in SPECS_SEEN + [s for p in OPERATOR_CASES for s in p]]


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.sampled_from(["det", "col", "x"]), JSON, max_size=3))
def test_evaluating_any_context_never_raises(context: dict[str, Any]) -> None:
    for condition in COMPILED:
        assert isinstance(condition.evaluate(context), bool)
        assert condition.explain(context).startswith("condition ")
