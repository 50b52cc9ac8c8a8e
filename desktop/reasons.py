"""Skip reasons, short: what the DAG engine stored for a skipped node, said in a few words.

The engine stores why a node was skipped (:mod:`lensflow.shared.dag.engine`): ``node is
disabled``, ``upstream node 'x' was skipped``, or a condition's explanation
(:meth:`lensflow.shared.dag.conditions.Condition.explain`), e.g. for an ``any`` of three
``contains`` tests::

    condition false: none of: 'car' in object_detection.detected_classes (value: ['person']);
    'truck' in object_detection.detected_classes (value: ['person']); 'bus' in ...

:func:`short_reason` folds that to ``no car, truck or bus detected``; a reason it cannot
fold is cut to :data:`MAX_CHARS`. The inspector shows the full reason on demand.
"""

from __future__ import annotations

import re

MAX_CHARS = 60
"""Longest short reason (the fallback cuts there)."""

_FALSE = "condition false: "
_NONE_OF = "none of: "
# 'car' in object_detection.detected_classes (value: ['person'])
_MEMBERSHIP = re.compile(
    r"^(?P<quote>['\"])(?P<value>.*?)(?P=quote) (?P<op>in|not in) (?P<path>[\w.\[\]']+)"
    r" \(values?: .*\)$"
)
_UPSTREAM = re.compile(r"^upstream node '(?P<node>[^']+)' was skipped$")
_CLASS_LISTS = ("detected_classes", "classes")


def short_reason(reason: str) -> str:
    """A skip reason in a few words (``no car detected``); see the module docstring."""
    reason = reason.strip()
    if reason == "node is disabled":
        return "disabled"
    upstream = _UPSTREAM.match(reason)
    if upstream:
        return f"{upstream['node']} was skipped"
    if reason.startswith(_FALSE):
        folded = _fold(reason.removeprefix(_FALSE))
        if folded:
            return folded
    return _cut(reason.removeprefix(_FALSE))


def _fold(why: str) -> str | None:
    """``no a, b or c detected`` for membership tests of one list, else None."""
    clauses = why.removeprefix(_NONE_OF).split("; ") if why.startswith(_NONE_OF) else [why]
    found = [_MEMBERSHIP.match(clause) for clause in clauses]
    if not all(found):
        return None
    matches = [m for m in found if m is not None]
    paths = {m["path"] for m in matches}
    ops = {m["op"] for m in matches}
    if len(paths) != 1 or len(ops) != 1:
        return None
    path = paths.pop()
    detected = path.rsplit(".", 1)[-1] in _CLASS_LISTS
    if ops == {"in"}:  # none of the values was there
        values = _joined([m["value"] for m in matches], word="or")
        return f"no {values} detected" if detected else f"no {values} in {path}"
    values = _joined([m["value"] for m in matches], word="and")  # each `not in` was false
    return f"{values} detected" if detected else f"{values} in {path}"


def _joined(values: list[str], *, word: str) -> str:
    """``a``, ``a or b``, ``a, b or c`` (or ``and``)."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} {word} {values[-1]}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rstrip() + "…"
