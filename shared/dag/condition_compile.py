"""Compile the structured condition form (YAML data) into condition objects.

The string form is first parsed into this same structured data by
:mod:`lensflow.shared.dag.condition_parse`, so both spellings compile to equal objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lensflow.shared.dag.condition_parse import (
    MAX_DEPTH,
    MAX_LIST_ITEMS,
    MAX_PARTS,
    MAX_PATH_SEGMENTS,
    constant_problem,
    parse_expression,
)
from lensflow.shared.dag.condition_values import Op, brief_repr
from lensflow.shared.dag.conditions import (
    AllOf,
    Always,
    AnyOf,
    Compare,
    Condition,
    Count,
    Literal,
    Not,
    Path,
)
from lensflow.shared.errors import ConditionError

_OP_KEYS = frozenset(Op)
_FORMS = "all, any, not, exists, contains, not_contains, eq, ne, lt, le, gt, ge, in, not_in, "
_FORMS += "count, some"
_DOTTED_KEY = re.compile(r"[^\s.\[\]()'\"]+")
_INTEGER = re.compile(r"-?\d+")
_LISTWISE = {
    "count": "{count: PATH, where: {class_name: person}, ge: 2}",
    "some": "{some: PATH, where: {class_name: car, score: {ge: 0.5}}}",
}


def compile_spec(spec: Any) -> Condition:
    """Compile the string or structured form of a condition (see ``compile_condition``)."""
    return _Compiler().condition(spec, at="", depth=0)


def _fail(at: str, message: str) -> ConditionError:
    """A ConditionError located at ``at`` in the structured form, e.g. ``all[1].gt``."""
    return ConditionError(f"{at}: {message}" if at else message)


def _within(at: str, key: object) -> str:
    """The location of ``key`` inside ``at``."""
    return f"{at}.{key}" if at else str(key)


class _Compiler:
    """Compiles the structured form, counting parts so that no YAML alias bomb can blow up."""

    def __init__(self) -> None:
        self.parts = 0

    def condition(self, spec: Any, *, at: str, depth: int) -> Condition:
        """Compile one condition found at ``at``."""
        self._count_part(at, depth)
        if isinstance(spec, bool):
            return Always(spec)
        if isinstance(spec, str):
            try:
                data = parse_expression(spec)
            except ConditionError as err:
                raise _fail(at, str(err)) from err
            return self.condition(data, at=at, depth=depth + 1)
        if isinstance(spec, Mapping) and spec:
            return self._mapping(spec, at=at, depth=depth)
        raise _fail(
            at,
            "expected a condition: true/false, an expression string or a mapping with one of "
            f"{_FORMS}; got {brief_repr(spec)}",
        )

    def _count_part(self, at: str, depth: int) -> None:
        """Enforce the size and nesting limits."""
        self.parts += 1
        if self.parts > MAX_PARTS or depth > MAX_DEPTH:
            raise _fail(at, f"condition too large (limits: {MAX_PARTS} parts, {MAX_DEPTH} levels)")

    def _mapping(self, spec: Mapping[Any, Any], *, at: str, depth: int) -> Condition:
        """A mapping with one operator key, or a count / some form."""
        if "count" in spec or "some" in spec:
            return self._listwise(spec, at=at)
        if len(spec) != 1:
            raise _fail(at, f"expected one key, one of {_FORMS}; got {brief_repr(list(spec))}")
        ((key, arg),) = spec.items()
        here = _within(at, key)
        if key in ("all", "any"):
            if not isinstance(arg, list | tuple) or not arg:
                raise _fail(here, f"expected a list of conditions, got {brief_repr(arg)}")
            items = (
                self.condition(c, at=f"{here}[{i}]", depth=depth + 1) for i, c in enumerate(arg)
            )
            return AllOf(tuple(items)) if key == "all" else AnyOf(tuple(items))
        if key == "not":
            return Not(self.condition(arg, at=here, depth=depth + 1))
        if key == "exists":  # present and not null: exactly what != None means
            return Compare(Op.NE, self._path(arg, at=here), Literal(None))
        if key not in _OP_KEYS and key not in ("contains", "not_contains"):
            raise _fail(at, f"unknown condition {key!r}; expected one of {_FORMS}")
        if not isinstance(arg, list | tuple) or len(arg) != 2:
            raise _fail(here, f"expected [PATH, VALUE], got {brief_repr(arg)}")
        return _compare(key, self._path(arg[0], at=f"{here}[0]"), arg[1], at=here)

    def _listwise(self, spec: Mapping[Any, Any], *, at: str) -> Condition:
        """``{count: PATH, where: W, OP: N}`` or ``{some: PATH, where: W}``."""
        head = "count" if "count" in spec else "some"
        ops = [key for key in spec if key in _OP_KEYS]
        extra = [key for key in spec if key not in (head, "where", *ops)]
        if extra or len(ops) != (head == "count"):
            raise _fail(at, f"expected {_LISTWISE[head]}, got {brief_repr(dict(spec))}")
        path = self._path(spec[head], at=_within(at, head))
        count = Count(path, self._where(spec.get("where"), at=_within(at, "where")))
        if head == "some":  # "some item matches" is "at least one item matches"
            return Compare(Op.GE, count, Literal(1))
        return _compare(ops[0], count, spec[ops[0]], at=_within(at, ops[0]))

    def _where(self, spec: Any, *, at: str) -> tuple[Compare, ...]:
        """Tests on list items: ``{field: VALUE}`` or ``{field: {OP: VALUE, ...}}``, all hold."""
        if spec is None:
            return ()
        if not isinstance(spec, Mapping) or not spec:
            raise _fail(
                at,
                "expected item fields mapped to a value or to {op: value}, e.g. "
                f"{{class_name: car, score: {{ge: 0.5}}}}; got {brief_repr(spec)}",
            )
        tests: list[Compare] = []
        for field, test in spec.items():
            path = self._path(field, at=_within(at, field))
            for key, value in (
                test.items() if isinstance(test, Mapping) and test else [("eq", test)]
            ):
                here = _within(_within(at, field), key)
                self._count_part(here, depth=0)
                if key not in _OP_KEYS:
                    raise _fail(here, f"unknown operator {key!r}; expected one of {_OPS}")
                tests.append(_compare(key, path, value, at=here))
        return tuple(tests)

    def _path(self, spec: Any, *, at: str) -> Path:
        """A dotted PATH (``node.key.0``) or a list of keys (``[node, key, 0]``)."""
        segments: tuple[Any, ...] = tuple(spec) if isinstance(spec, list | tuple) else ()
        problem = None
        if isinstance(spec, str):
            parts = spec.strip().split(".")
            segments = tuple(int(p) if _INTEGER.fullmatch(p) else p for p in parts)
            if not all(_DOTTED_KEY.fullmatch(part) for part in parts):
                problem = "dotted keys may not be empty or hold blanks, brackets or quotes"
        if problem := problem or _path_problem(segments):
            raise _fail(
                at,
                f"{problem}; a PATH looks like object_detection.detections.0.score "
                f"or [object_detection, detections, 0, score]; got {brief_repr(spec)}",
            )
        return Path(segments)


_OPS = ", ".join(Op)


def _path_problem(segments: tuple[Any, ...]) -> str | None:
    """What is wrong with a path's keys, if anything."""
    if not segments or not isinstance(segments[0], str):
        return "a path starts with a node name"
    if len(segments) > MAX_PATH_SEGMENTS:
        return f"a path has at most {MAX_PATH_SEGMENTS} keys"
    for key in segments:
        if isinstance(key, bool) or not isinstance(key, str | int):
            return "path keys are strings or integers"
        if isinstance(key, str) and key.startswith("__"):
            return f"dunder key {key!r} is not allowed"
    return None


def _compare(key: str, subject: Path | Count, constant: Any, *, at: str) -> Compare:
    """``subject KEY constant`` (``contains`` reads ``constant in subject``), checked."""
    scalars = isinstance(constant, list | tuple) and len(constant) <= MAX_LIST_ITEMS
    if scalars and all(item is None or isinstance(item, str | int | float) for item in constant):
        constant = tuple(constant)
    elif constant is not None and not isinstance(constant, str | int | float):
        raise _fail(
            at,
            "expected a constant (string, number, true/false, null) or a list of at most "
            f"{MAX_LIST_ITEMS} constants; got {brief_repr(constant)}",
        )
    if problem := constant_problem(key, constant):
        raise _fail(at, problem)
    if key in ("contains", "not_contains"):
        return Compare(Op.IN if key == "contains" else Op.NOT_IN, Literal(constant), subject)
    return Compare(Op(key), subject, Literal(constant))


def compile_condition(spec: str | bool | Mapping[str, Any] | Condition | None) -> Condition:
    """Compile a ``when`` condition, once at load, into an immutable :class:`Condition`.

    Args:
        spec: ``None`` (no condition: always true), ``True``/``False``, the string form, or
            the structured form as parsed from YAML. A compiled condition is returned as is.

    Returns:
        The condition; the string and structured forms of one condition compile equal.

    Raises:
        ConditionError: If ``spec`` is outside the condition language, naming what and where.

    """
    if spec is None:
        return Always(True)
    if isinstance(spec, Condition):
        return spec
    return compile_spec(spec)
