"""The versioned crop envelope and the small JSON messages of the wire protocol.

A crop message is ``b"LFC"`` + 1 format byte + 4-byte big-endian header length + a UTF-8
JSON header (:class:`CropHeader`) + the raw JPEG bytes; ``docs/protocol.md`` describes it
byte by byte. Every ``decode_*`` function returns a valid message or raises
:class:`~shared.errors.ProtocolError`, whatever bytes it is given, so a worker can route a bad
message to its dead-letter record instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import ValidationError, model_validator

from shared.errors import ProtocolError
from shared.protocol.topics import SEGMENT_PATTERN, TopicKind, parse_topic

MAGIC = b"LFC"
"""First three bytes of every crop message."""
FORMAT_VERSION = 1
"""Version of the binary framing (byte 3); bumped only if the preamble layout changes."""
SCHEMA_VERSION = 1
"""Version of the JSON headers this module writes."""
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
"""Header versions this module reads."""
PREAMBLE = struct.Struct(">3sBI")
"""Magic, format version, header length (big-endian uint32): 8 bytes."""
MAX_HEADER_BYTES = 64 * 1024
"""Largest JSON header accepted, in bytes."""
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest whole crop message accepted by default (preamble + header + JPEG), in bytes."""
MAX_JSON_MESSAGE_BYTES = 64 * 1024
"""Largest status or config-ack message accepted, in bytes."""
JPEG_SOI = b"\xff\xd8"
"""Start-of-image marker every JPEG payload begins with."""
MAX_ATTRIBUTES = 32
"""Most entries in :attr:`CropHeader.attributes`."""

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_HASH = r"^[A-Za-z0-9:_.-]{1,128}$"
_MAX_ERRORS, _MAX_SHOWN = 5, 80
_Model = TypeVar("_Model", bound=BaseModel)


def _check_box(value: Any, *, integers: bool) -> tuple[float, ...]:
    """Accept 4 finite numbers with x1<x2 and y1<y2 (integers only if asked)."""
    kind = "integers" if integers else "numbers"
    ok_types = (int,) if integers else (int, float)
    numbers = list(value) if isinstance(value, list | tuple) else []
    if (
        len(numbers) != 4
        or not all(isinstance(n, ok_types) and not isinstance(n, bool) for n in numbers)
        or not all(abs(n) < float("inf") for n in numbers)  # rejects NaN and infinities too
        or not (numbers[0] < numbers[2] and numbers[1] < numbers[3])
    ):
        raise ValueError(f"box must be 4 {kind} with x1<x2 and y1<y2, but got {_shown(value)}")
    return tuple(numbers)


def _check_utc(value: datetime) -> datetime:
    """Reject naive datetimes; express aware ones in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"must be timezone-aware (UTC), but got naive datetime {value.isoformat()}")
    return value.astimezone(UTC)


def _check_schema_version(value: int) -> int:
    """Reject header versions this module cannot read."""
    if value not in SUPPORTED_SCHEMA_VERSIONS:
        wanted = " or ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ValueError(f"expected schema_version {wanted}, got {value}")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_check_utc)]
SchemaVersion = Annotated[int, AfterValidator(_check_schema_version)]
Box = Annotated[
    tuple[float, float, float, float], BeforeValidator(lambda v: _check_box(v, integers=False))
]
CropBox = Annotated[tuple[int, int, int, int], BeforeValidator(lambda v: _check_box(v, integers=True))]
ConfigHash = Annotated[str, Field(pattern=_HASH)]
AgentVersion = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
AttributeValue = bool | Annotated[int, Field(ge=-(2**63), lt=2**63)] | float | Annotated[str, Field(max_length=256)]


class _WireModel(BaseModel):
    """Base of every wire model: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, protected_namespaces=()
    )
