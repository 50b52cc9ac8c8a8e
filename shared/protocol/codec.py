"""JSON codec shared by the protocol's messages: sized bytes, strict parsing, re-validation.

Every failure becomes a :class:`~lensflow.shared.errors.ProtocolError` naming what was
expected and what was got: duplicate keys, ``NaN``/``Infinity``, unknown schema versions and
every field error are refused.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lensflow.shared.errors import ProtocolError
from lensflow.shared.protocol.messages import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, short_repr

_MAX_ERRORS = 5
_Message = TypeVar("_Message", bound=BaseModel)


def sized_bytes(data: object, *, max_bytes: int, what: str) -> bytes:
    """Return ``data`` as bytes, refusing non-bytes and anything over ``max_bytes``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what} must be bytes, but got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise ProtocolError(f"{what} is {len(raw)} bytes, over the limit of {max_bytes} bytes")
    return raw


def revalidated_json(message: BaseModel, *, what: str) -> bytes:
    """Dump a model to JSON and validate that JSON again, as a receiver would."""
    try:
        raw = message.model_dump_json().encode("utf-8")
    except (ValueError, TypeError) as err:  # e.g. a lone surrogate slipped in via model_copy
        raise ProtocolError(f"invalid {what}: {err}") from err
    parse_json(type(message), raw, what=what)
    return raw


def parse_json(model: type[_Message], raw: bytes, *, what: str) -> _Message:
    """Validate UTF-8 JSON bytes as ``model``, translating every failure to ProtocolError."""
    try:
        document = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"{what} is not valid UTF-8 JSON: {short_repr(str(err))}") from err
    if not isinstance(document, dict):
        raise ProtocolError(f"{what} must be a JSON object, but got {type(document).__name__}")
    version = document.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        wanted = " or ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ProtocolError(f"{what}: expected schema_version {wanted}, got {short_repr(version)}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise ProtocolError(f"invalid {what}: {describe(err)}") from err


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, rejecting repeated keys (which parsers resolve differently)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {short_repr(duplicate)}")
    return document


def _no_constant(name: str) -> Any:
    """Reject the non-standard JSON constants NaN, Infinity and -Infinity."""
    raise ValueError(f"{name} is not valid JSON")


def describe(err: ValidationError) -> str:
    """Render a ValidationError as 'field: problem (got value)' items, the first few only."""
    items = []
    for error in err.errors()[:_MAX_ERRORS]:
        where = ".".join(str(part) for part in error["loc"])
        problem = error["msg"].removeprefix("Value error, ")
        if error["type"] not in {"value_error", "missing"}:
            problem += f" (got {short_repr(error.get('input'))})"
        items.append(f"{where}: {problem}" if where else problem)
    hidden = err.error_count() - _MAX_ERRORS
    return "; ".join(items) + (f"; and {hidden} more" if hidden > 0 else "")
