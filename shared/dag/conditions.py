"""The condition language of the pipeline DAG: ``when:`` conditions compiled once into data.

A DAG node may carry ``when:``, evaluated once per image against ``context``: a mapping of
upstream node name to that node's output dict. A condition is written as structured YAML data
or as a Python-like string; both compile, once at load, into the same tree of frozen
dataclasses evaluated with an operator table. Config text is never evaluated (strings are
parsed by :mod:`lensflow.shared.dag.condition_parse` against an allow-list).

Structured form; ``PATH`` is ``node.key.subkey`` (integer segments index lists) or a list of
keys, ``V`` a constant::

    true | false | {all: [C, ...]} | {any: [C, ...]} | {not: C} | "<string form>"
    {exists: PATH}                         # the value at PATH is present and not null
    {contains: [PATH, V]}                  # V is in the list at PATH     (also not_contains)
    {in: [PATH, [V1, V2]]}                 # the value at PATH is one of  (also not_in)
    {eq|ne|lt|le|gt|ge: [PATH, V]}
    {count: PATH, where: W, ge: 2}         # number of items (matching W) in the list at PATH
    {some: PATH, where: W}                 # at least one item matches: count >= 1
    W: {class_name: car, score: {ge: 0.5}, area: {ge: 4000}}   # every field test must hold

String form: ``'car' in context['det']['classes'] and len(context['det']['boxes']) >= 2``: one
context value (a path or ``len``) compared with constants, joined by and / or / not.

Evaluation is total: a missing path, a null value or a type mismatch makes that comparison
false, never an exception (``True`` is not ``1``; a null only matches ``== None``, and
``!= None`` means "present"). ``not`` negates a whole condition, so ``{not: C}`` holds when
C's data is missing, while ``ne`` / ``not_in`` on missing data are false.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from lensflow.shared.dag.condition_values import (
    _OPERATORS,
    _SYMBOLS,
    MISSING,
    Op,
    Scalar,
    _shown,
)

_SIMPLE_KEY = re.compile(r"[A-Za-z_][\w\-]*")


@dataclass(frozen=True, slots=True)
class Path:
    """A value in the context: ``segments[0]`` is the node name; ints index lists."""

    segments: tuple[str | int, ...]

    def resolve(self, root: Mapping[str, Any]) -> Any:
        """Follow the segments through mappings and lists; ``MISSING`` where that fails."""
        value: Any = root
        for key in self.segments:
            if isinstance(value, Mapping):
                default: Any = value.get(str(key), MISSING) if isinstance(key, int) else MISSING
                value = value.get(key, default)
            elif isinstance(value, list | tuple) and isinstance(key, int):
                value = value[key] if -len(value) <= key < len(value) else MISSING
            else:
                return MISSING
            if value is MISSING:
                return MISSING
        return value

    def describe(self) -> str:
        """Dotted form, e.g. ``object_detection.detections.0.score``."""
        parts = [
            f".{key}" if isinstance(key, int) or _SIMPLE_KEY.fullmatch(key) else f"[{key!r}]"
            for key in self.segments
        ]
        return "".join(parts).removeprefix(".")

    def references(self) -> frozenset[str]:
        """The node name."""
        return frozenset(key for key in self.segments[:1] if isinstance(key, str))


@dataclass(frozen=True, slots=True, eq=False)
class Literal:
    """A constant from the condition; a tuple holds the options of ``in``."""

    value: Scalar | tuple[Scalar, ...]

    def resolve(self, root: Mapping[str, Any]) -> Any:
        """The constant itself."""
        return self.value

    def describe(self) -> str:
        """Python-like form: ``'car'``, ``0.5``, ``['car', 'truck']``."""
        return repr(list(self.value)) if isinstance(self.value, tuple) else repr(self.value)

    def references(self) -> frozenset[str]:
        """None: a constant reads no node."""
        return frozenset()

    def __eq__(self, other: object) -> bool:
        # Typed, so that ``eq: [p, true]`` and ``eq: [p, 1]`` are not equal conditions.
        return isinstance(other, Literal) and _typed(self.value) == _typed(other.value)

    def __hash__(self) -> int:
        return hash(_typed(self.value))


def _typed(value: Any) -> Any:
    """``value`` paired with its type(s), for strict equality of literals."""
    if isinstance(value, tuple):
        return tuple(_typed(item) for item in value)
    return (type(value), value)


@dataclass(frozen=True, slots=True)
class Count:
    """The number of items in the list at ``path``, counting only those matching ``where``."""

    path: Path
    where: tuple[Compare, ...] = ()

    def resolve(self, root: Mapping[str, Any]) -> Any:
        """The count, or ``MISSING`` if the path does not hold a list."""
        items = self.path.resolve(root)
        if not isinstance(items, list | tuple):
            return MISSING
        return sum(1 for item in items if _matches(item, self.where)) if self.where else len(items)

    def describe(self) -> str:
        """E.g. ``count(object_detection.detections where class_name == 'person')``."""
        tests = " and ".join(test.describe() for test in self.where)
        return f"count({self.path.describe()}{' where ' if tests else ''}{tests})"

    def references(self) -> frozenset[str]:
        """The node name of the path (``where`` fields are item fields, not nodes)."""
        return self.path.references()


Operand: TypeAlias = Path | Literal | Count  # what a comparison compares


def _matches(item: Any, where: tuple[Compare, ...]) -> bool:
    """Whether a list item is a mapping passing every field test."""
    return isinstance(item, Mapping) and all(test.evaluate(item) for test in where)


class Condition(ABC):
    """A compiled ``when`` condition: an immutable tree, evaluated against a context.

    ``context`` maps upstream node names to their output dicts. Evaluation never raises: data
    that is missing, null or of the wrong type makes a comparison false.
    """

    __slots__ = ()

    @abstractmethod
    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether the condition holds for ``context``."""

    @abstractmethod
    def describe(self) -> str:
        """The condition in readable form, e.g. ``'car' in object_detection.classes``."""

    @abstractmethod
    def references(self) -> frozenset[str]:
        """Names of the upstream nodes whose output the condition reads."""

    def explain(self, context: Mapping[str, Any]) -> str:
        """Say whether the condition holds for ``context`` and, if not, why: a skip reason.

        Args:
            context: Upstream node name to output dict.

        Returns:
            E.g. ``"condition false: 'car' in object_detection.detected_classes (value:
            ['person'])"``, or ``"condition true: ..."`` with the description.

        """
        if self.evaluate(context):
            return f"condition true: {self.describe()}"
        return f"condition false: {self._why(context)}"

    def _why(self, context: Mapping[str, Any]) -> str:
        """The reason this (false) condition is false."""
        return self.describe()

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True)
class Always(Condition):
    """A constant condition: ``true`` (also an absent ``when``) or ``false``."""

    value: bool

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """The constant."""
        return self.value

    def describe(self) -> str:
        """``true`` or ``false``."""
        return "true" if self.value else "false"

    def references(self) -> frozenset[str]:
        """No nodes: a constant reads nothing."""
        return frozenset()


def _grouped(condition: Condition) -> str:
    """A child of and/or, parenthesised when it is itself an and/or."""
    text = condition.describe()
    return f"({text})" if isinstance(condition, _Junction) else text


@dataclass(frozen=True, slots=True)
class _Junction(Condition):
    """``items`` joined by and/or."""

    items: tuple[Condition, ...]
    word: ClassVar[str]

    def describe(self) -> str:
        """The items joined by ``and`` / ``or``."""
        return f" {self.word} ".join(_grouped(item) for item in self.items)

    def references(self) -> frozenset[str]:
        """Nodes read by any item."""
        return frozenset().union(*(item.references() for item in self.items))


@dataclass(frozen=True, slots=True)
class AllOf(_Junction):
    """Holds when every item holds."""

    word = "and"

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether all items hold (stopping at the first that does not)."""
        return all(item.evaluate(context) for item in self.items)

    def _why(self, context: Mapping[str, Any]) -> str:
        failed = next(item for item in self.items if not item.evaluate(context))
        return failed._why(context)


@dataclass(frozen=True, slots=True)
class AnyOf(_Junction):
    """Holds when at least one item holds."""

    word = "or"

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether some item holds (stopping at the first that does)."""
        return any(item.evaluate(context) for item in self.items)

    def _why(self, context: Mapping[str, Any]) -> str:
        return "none of: " + "; ".join(item._why(context) for item in self.items)


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """Holds when ``item`` does not (including when its data is missing)."""

    item: Condition

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """The negation of the item."""
        return not self.item.evaluate(context)

    def describe(self) -> str:
        """``not (...)``."""
        inner = self.item.describe()
        return f"not {inner}" if isinstance(self.item, Always) else f"not ({inner})"

    def references(self) -> frozenset[str]:
        """Nodes read by the item."""
        return self.item.references()

    def _why(self, context: Mapping[str, Any]) -> str:
        return f"{self.describe()} (the inner condition holds)"


@dataclass(frozen=True, slots=True)
class Compare(Condition):
    """``left OP right`` through the operator table; ``in`` reads ``left in right``."""

    op: Op
    left: Operand
    right: Operand

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Apply the operator; missing data, a null or mismatched kinds give false."""
        left, right = self.left.resolve(context), self.right.resolve(context)
        if left is MISSING or right is MISSING:
            return False
        if left is None or right is None:
            return self._null_test(left, right)
        return _OPERATORS[self.op](left, right)

    def _null_test(self, left: Any, right: Any) -> bool:
        """A null only compares with the literal None: ``== None`` and ``!= None``."""
        if self.op not in (Op.EQ, Op.NE) or Literal(None) not in (self.left, self.right):
            return False
        both_null = left is None and right is None
        return both_null if self.op is Op.EQ else not both_null

    def describe(self) -> str:
        """E.g. ``object_detection.count >= 2``."""
        return f"{self.left.describe()} {_SYMBOLS[self.op]} {self.right.describe()}"

    def references(self) -> frozenset[str]:
        """Nodes read by either side."""
        return self.left.references() | self.right.references()

    def _why(self, context: Mapping[str, Any]) -> str:
        sides = [side for side in (self.left, self.right) if not isinstance(side, Literal)]
        values = ", ".join(_shown(side.resolve(context)) for side in sides)
        return f"{self.describe()} ({'values' if len(sides) > 1 else 'value'}: {values})"
