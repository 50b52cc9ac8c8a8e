"""Compile ``when`` conditions: the string form into the structured form, that into objects.

The string form is parsed with ``ast.parse(text, mode="eval")`` and walked against an
allow-list; it is never evaluated or turned into code. Every construct outside the condition
language is rejected at load, with a message naming it. What the walk produces is plain data
in the structured form (see :mod:`lensflow.shared.dag.conditions`), so both forms go through one
compiler and give equal condition objects::

    "'car' in context['det']['classes']"    -> {"contains": [["det", "classes"], "car"]}
    "len(context['det']['boxes']) >= 2"     -> {"count": ["det", "boxes"], "ge": 2}
    "0.5 < context['det']['score'] <= 0.9"  -> {"all": [{"gt": [...]}, {"le": [...]}]}
"""

from __future__ import annotations

import ast
import warnings
from typing import Any

from lensflow.shared.dag.condition_values import brief_repr
from lensflow.shared.errors import ConditionError

MAX_SOURCE_CHARS = 2_000
MAX_AST_NODES = 500
MAX_PARTS = 500  # conditions and field tests in one compiled condition
MAX_DEPTH = 32
MAX_PATH_SEGMENTS = 16
MAX_LIST_ITEMS = 1_000

ALLOWED_SUMMARY = (
    "allowed: and, or, not, comparisons (==, !=, <, <=, >, >=, in, not in), constants, "
    "lists of constants, paths context['node']['key'][0] and len(context[...])"
)
_EXAMPLE = "'car' in context['object_detection']['detected_classes']"

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    *(ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd),
    *(ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn),
    *(ast.Constant, ast.List, ast.Tuple, ast.Subscript, ast.Name, ast.Load, ast.Call),
)
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (x.y)",
    ast.Lambda: "lambda",
    **dict.fromkeys((ast.ListComp, ast.SetComp, ast.DictComp), "comprehension"),
    ast.GeneratorExp: "generator expression",
    ast.NamedExpr: "assignment expression (:=)",
    **dict.fromkeys((ast.JoinedStr, ast.FormattedValue), "f-string"),
    ast.Starred: "starred expression (*x)",
    ast.Slice: "slice (x[a:b])",
    ast.IfExp: "conditional expression (x if c else y)",
    **dict.fromkeys((ast.Await, ast.Yield, ast.YieldFrom), "await / yield"),
    **dict.fromkeys((ast.Dict, ast.Set), "dict or set display"),
    **dict.fromkeys((ast.Is, ast.IsNot), "'is' comparison (use == or !=)"),
    ast.Invert: "bitwise not (~)",
    ast.keyword: "keyword argument",
}
_ARITHMETIC: dict[type[ast.AST], str] = {
    **{ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//"},
    **{ast.Mod: "%", ast.Pow: "**", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>"},
    **{ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"},
}
_COMPARE_KEYS: dict[type[ast.cmpop], str] = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt"}
_COMPARE_KEYS.update({ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"})
_FLIPPED = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}


def parse_expression(text: str) -> Any:
    """Translate a condition expression string into the structured form.

    Args:
        text: The string form, e.g. ``"'car' in context['det']['classes']"``.

    Returns:
        The equivalent structured form: ``True``/``False`` or a mapping of plain data.

    Raises:
        ConditionError: If the text is too long, is not valid syntax, or uses any construct
            outside the condition language (named in the message, with its column).

    """
    if len(text) > MAX_SOURCE_CHARS:
        raise ConditionError(
            f"condition text is {len(text)} characters long; the limit is {MAX_SOURCE_CHARS}"
        )
    source = text.strip()
    if not source:
        raise ConditionError(f"condition text is empty; write an expression such as {_EXAMPLE}")
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": not the user's concern
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise ConditionError(
            f"invalid condition syntax at column {err.offset or 1}: {err.msg}; a condition is "
            f"one expression such as {_EXAMPLE} (statements such as import are not allowed)"
        ) from err
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, parser overflow
        raise ConditionError(f"condition text cannot be parsed: {err}") from err
    _scan(list(ast.walk(tree)))
    return _condition(tree.body, depth=0)


def _error(node: ast.AST, message: str) -> ConditionError:
    """A ConditionError pointing at ``node``'s column (and line, past the first)."""
    if not isinstance(node, ast.expr | ast.keyword):  # operators carry no position
        return ConditionError(message)
    line, column = node.lineno, node.col_offset + 1
    where = f"column {column}" if line == 1 else f"line {line}, column {column}"
    return ConditionError(f"{message} (at {where})")


def _scan(nodes: list[ast.AST]) -> None:
    """Reject oversized trees, dunders, then any construct outside the allow-list."""
    if len(nodes) > MAX_AST_NODES:
        raise ConditionError(
            f"condition is too complex: {len(nodes)} syntax nodes; the limit is {MAX_AST_NODES}"
        )
    # Dunders first: the report then names the identifier an injection attempt relies on.
    for node in nodes:
        if (name := _dunder(node)) is not None:
            raise _error(node, f"dunder name {name!r} is not allowed in a condition")
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            what = _CONSTRUCTS.get(type(node), f"{type(node).__name__} expression")
            if isinstance(node, ast.BinOp):
                what = f"arithmetic ({_ARITHMETIC.get(type(node.op), '?')})"
            raise _error(node, f"{what} is not allowed in a condition; {ALLOWED_SUMMARY}")
    for node in nodes:
        if (problem := _misuse(node)) is not None:
            raise _error(node, problem)


def _dunder(node: ast.AST) -> str | None:
    """The ``__name__`` that ``node`` uses as a name, attribute or key, if any."""
    name: object = None
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        name = node.slice.value
    return name if isinstance(name, str) and name.startswith("__") else None


def _misuse(node: ast.AST) -> str | None:
    """What is wrong with an allowed node type used in a disallowed way, if anything."""
    if isinstance(node, ast.Call):
        func = node.func
        if not (isinstance(func, ast.Name) and func.id == "len"):
            called = f"{func.id}()" if isinstance(func, ast.Name) else "of an expression"
            return f"function call {called} is not allowed; the only function is len(context[...])"
        if len(node.args) != 1 or node.keywords:
            return "len() takes exactly one context path, e.g. len(context['node']['detections'])"
    if isinstance(node, ast.Name) and node.id not in ("context", "len"):
        return f"name {node.id!r} is not allowed; the only name is context (and len)"
    return None


def _condition(node: ast.expr, *, depth: int) -> Any:
    """Translate an expression in condition position (it must yield true or false)."""
    if depth > MAX_DEPTH:
        raise _error(node, f"condition is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.BoolOp):
        key = "all" if isinstance(node.op, ast.And) else "any"
        return {key: [_condition(value, depth=depth + 1) for value in node.values]}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return {"not": _condition(node.operand, depth=depth + 1)}
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        pairs = zip(node.ops, operands[:-1], operands[1:], strict=True)
        specs = [_comparison(op, left, right) for op, left, right in pairs]
        return specs[0] if len(specs) == 1 else {"all": specs}
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    raise _error(
        node,
        f"{brief_repr(ast.unparse(node))} is a value, not a condition; compare it, e.g. "
        "context['node']['flag'] == True or len(context['node']['detections']) > 0",
    )


def _comparison(op: ast.cmpop, left_node: ast.expr, right_node: ast.expr) -> Any:
    """Translate one ``left OP right``: a context value (path or len) against a constant."""
    left, right = _value(left_node), _value(right_node)
    if isinstance(left, tuple) == isinstance(right, tuple):
        raise _error(
            left_node,
            "a comparison compares a context value (context[...] or len(context[...])) "
            "with a constant, not two context values or two constants",
        )
    if isinstance(op, ast.In | ast.NotIn):
        key = "not_" if isinstance(op, ast.NotIn) else ""
        key += "in" if isinstance(left, tuple) else "contains"
    else:
        key = _COMPARE_KEYS[type(op)]
    (kind, segments), constant = (left, right) if isinstance(left, tuple) else (right, left)
    if not isinstance(left, tuple):
        key = _FLIPPED.get(key, key)
    if kind == "count" and key.endswith("contains"):
        raise _error(right_node, "len(...) is a number; 'in' needs a list to look in")
    if problem := constant_problem(key, constant):
        raise _error(left_node, problem)
    return {kind: segments, key: constant} if kind == "count" else {key: [segments, constant]}


def _value(node: ast.expr) -> Any:
    """Translate a value: a constant, a list, or ``("path" | "count", keys)`` for context."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
        return _signed_number(node)
    if isinstance(node, ast.List | ast.Tuple):
        items = [_value(item) for item in node.elts]
        if any(isinstance(item, tuple | list) for item in items):
            raise _error(node, "a list in a condition may hold only constants")
        return items
    if isinstance(node, ast.Subscript):
        return ("path", _path(node))
    if isinstance(node, ast.Call):  # _scan let through only len(<one argument>)
        argument = node.args[0]
        if not isinstance(argument, ast.Subscript):
            raise _error(argument, "len() takes a context path, e.g. len(context['node']['items'])")
        return ("count", _path(argument))
    if isinstance(node, ast.Name):
        raise _error(node, f"{node.id} must be used as context['node'][...] or len(context[...])")
    raise _error(node, "a condition (and, or, not, comparison) cannot be used as a value")


def _signed_number(node: ast.UnaryOp) -> int | float:
    """Fold ``-1`` / ``+2.5`` into a number constant; anything else is rejected."""
    operand = node.operand
    if not (
        isinstance(operand, ast.Constant)
        and isinstance(operand.value, int | float)
        and not isinstance(operand.value, bool)
    ):
        raise _error(node, "unary minus or plus applies only to a number constant")
    return -operand.value if isinstance(node.op, ast.USub) else operand.value


def _path(node: ast.Subscript) -> list[str | int]:
    """Turn ``context['node']['key'][0]`` into ``['node', 'key', 0]``."""
    keys: list[str | int] = []
    current: ast.expr = node
    while isinstance(current, ast.Subscript):
        keys.append(_key(current.slice))
        current = current.value
    if not (isinstance(current, ast.Name) and current.id == "context"):
        raise _error(current, "a path must start at context, e.g. context['node']['key']")
    keys.reverse()
    if len(keys) > MAX_PATH_SEGMENTS:
        raise _error(node, f"a path may have at most {MAX_PATH_SEGMENTS} keys, got {len(keys)}")
    if not isinstance(keys[0], str):
        raise _error(node, "the first key after context must be a node name (a string)")
    return keys


def _key(node: ast.expr) -> str | int:
    """One path key: a string or integer constant (negative integers index from the end)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Constant | ast.UnaryOp):
        value = node.value if isinstance(node, ast.Constant) else _signed_number(node)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise _error(
        node,
        f"a path key must be a string or integer constant, got {brief_repr(ast.unparse(node))}",
    )


def constant_problem(key: str, constant: Any) -> str | None:
    """What makes ``constant`` unfit for the operator ``key`` (``in``, ``gt``...), if anything."""
    if key in ("in", "not_in") and not isinstance(constant, list | tuple | str):
        return f"{key} looks in a list (or a string), got {brief_repr(constant)}"
    if key in ("contains", "not_contains") and isinstance(constant, list | tuple):
        return f"{key} looks for one constant, got the list {brief_repr(constant)}"
    orderable = isinstance(constant, int | float | str) and not isinstance(constant, bool)
    if key in ("lt", "le", "gt", "ge") and not orderable:
        return f"{key} compares with a number or a string, got {brief_repr(constant)}"
    return None
