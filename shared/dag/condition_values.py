"""Value semantics of the condition language: kinds, strict equality, the operator table.

Evaluation is total: these helpers answer False (or ``MISSING``) for missing data, nulls and
mismatched types instead of raising, so a condition can never take a worker down.
"""

from __future__ import annotations

import enum
import numbers
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

Scalar: TypeAlias = str | int | float | bool | None


class Op(enum.StrEnum):
    """A comparison operator, named as its key in the structured form."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"
    NOT_IN = "not_in"


_SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in"}
_SYMBOLS["not_in"] = "not in"  # the string form of each operator
_MAX_VALUE_DEPTH = 32  # how deep equality looks into nested context values
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6
_repr.maxlevel = 3


def brief_repr(value: object) -> str:
    """``repr`` cut to a readable length and depth, safe on huge or self-referencing data."""
    return _repr.repr(value)


class _Missing(enum.Enum):
    """Marks a path that does not resolve: absent key, index out of range, wrong type."""

    MISSING = "missing"


MISSING = _Missing.MISSING


def _kind(value: object) -> str:
    """The comparison kind of a value; only values of one kind compare."""
    if value is None or isinstance(value, bool | str):
        return type(value).__name__
    if isinstance(value, numbers.Real):
        return "number"  # also numpy scalars, which upstream outputs may carry
    if isinstance(value, list | tuple):
        return "list"
    return "mapping" if isinstance(value, Mapping) else "other"


def _same(left: Any, right: Any, depth: int = 0) -> bool:
    """Structural equality where kinds must match (``True`` is not ``1``)."""
    kind = _kind(left)
    if kind != _kind(right) or kind == "other" or depth > _MAX_VALUE_DEPTH:
        return False
    if kind == "list":
        pairs = zip(left, right, strict=False)
        return len(left) == len(right) and all(_same(a, b, depth + 1) for a, b in pairs)
    if kind == "mapping":
        keys = left.keys()
        return keys == right.keys() and all(_same(left[k], right[k], depth + 1) for k in keys)
    return bool(left == right)


def _membership(item: Any, container: Any) -> bool | None:
    """``item in container`` for a list, a string or a mapping's keys; None if not comparable."""
    kind = _kind(container)
    if kind == "list" and _kind(item) != "other":
        return any(_same(item, element) for element in container)
    if kind == "str" and isinstance(item, str):
        return item in container
    if kind == "mapping" and _kind(item) in ("str", "number"):
        return item in container
    return None


def _orderable(left: Any, right: Any) -> bool:
    """Whether ``<`` applies: two numbers or two strings."""
    return _kind(left) == _kind(right) and _kind(left) in ("number", "str")


_OPERATORS: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: _same,
    Op.NE: lambda a, b: _kind(a) == _kind(b) != "other" and not _same(a, b),
    Op.LT: lambda a, b: _orderable(a, b) and bool(a < b),
    Op.LE: lambda a, b: _orderable(a, b) and bool(a <= b),
    Op.GT: lambda a, b: _orderable(a, b) and bool(a > b),
    Op.GE: lambda a, b: _orderable(a, b) and bool(a >= b),
    Op.IN: lambda a, b: _membership(a, b) is True,
    Op.NOT_IN: lambda a, b: _membership(a, b) is False,
}


def _shown(value: Any) -> str:
    """A context value as shown in an explanation."""
    return "missing" if value is MISSING else brief_repr(value)
