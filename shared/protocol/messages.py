"""The message schemas of the wire protocol: the crop header, status and config ack.

These are pydantic models with strict types, unknown keys rejected and every field
described; :mod:`lensflow.shared.protocol.envelope` frames and parses them. Constructing a model
directly raises pydantic's ``ValidationError``; the ``decode_*``/``encode_*`` functions and
:func:`~lensflow.shared.protocol.envelope.new_crop_header` translate that to ``ProtocolError``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from lensflow.shared.protocol.topics import SEGMENT_PATTERN

SCHEMA_VERSION = 1
"""Version of the JSON messages this package writes."""
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
"""Message schema versions this package reads."""
MAX_ATTRIBUTES = 32
"""Most entries in :attr:`CropHeader.attributes` (and in :attr:`StatusMessage.counters`)."""

_KEY = r"^[A-Za-z0-9_.-]{1,64}$"
_MAX_SHOWN = 80


def short_repr(value: Any) -> str:
    """Repr of a value, cut to a length fit for an error message."""
    try:
        text = repr(value)
    except ValueError:  # ints beyond sys.get_int_max_str_digits() refuse repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _check_box(value: Any, *, integers: bool) -> tuple[float, ...]:
    """Accept 4 finite numbers (integers if asked) with x1<x2 and y1<y2."""
    numbers = list(value) if isinstance(value, list | tuple) else []
    allowed = (int,) if integers else (int, float)
    if (
        len(numbers) != 4
        or not all(isinstance(n, allowed) and not isinstance(n, bool) for n in numbers)
        or not all(abs(n) < float("inf") for n in numbers)  # also false for NaN
        or not (numbers[0] < numbers[2] and numbers[1] < numbers[3])
    ):
        kind = "integers" if integers else "numbers"
        raise ValueError(f"box must be 4 {kind} with x1<x2 and y1<y2, but got {short_repr(value)}")
    return tuple(numbers)


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339_only(value: Any) -> Any:
    """On the wire a timestamp is an RFC 3339 string with an offset, nothing else.

    pydantic would read an epoch number, or a string of digits, as a time: refuse both.
    """
    if isinstance(value, datetime):
        return value
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is not None:
        day, clock, fraction, offset = match.groups()
        micros = f".{(fraction or '0')[:6]:0<6}"  # RFC 3339 allows more digits than Python
        zone = "+00:00" if offset in ("Z", "z") else offset
        try:
            return datetime.fromisoformat(f"{day}T{clock}{micros}{zone}")
        except ValueError as err:  # a 13th month, a 61st second...
            raise ValueError(
                f"expected a valid RFC 3339 timestamp, got {short_repr(value)}"
            ) from err
    raise ValueError(
        "expected an RFC 3339 timestamp with an offset such as 2024-05-01T12:00:00Z, "
        f"got {short_repr(value)}"
    )


def _not_an_int(value: Any) -> Any:
    """A float attribute must be a JSON number with a fraction or exponent, not an integer.

    Without this an integer beyond 64 bits would slip through as an (inexact) float.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"expected a 64-bit integer or a float, got the integer {short_repr(value)}"
        )
    return value


def _check_utc(value: datetime) -> datetime:
    """Reject naive datetimes; express aware ones in UTC."""
    if value.utcoffset() is None:
        raise ValueError(f"must be timezone-aware (UTC), but got naive datetime {value}")
    try:
        return value.astimezone(UTC)
    except OverflowError as err:  # e.g. 0001-01-01T00:00+05:00 has no UTC datetime
        raise ValueError(f"must be expressible in UTC, but got {value.isoformat()}") from err


def _check_schema_version(value: int) -> int:
    """Reject schema versions this module cannot read."""
    if value not in SUPPORTED_SCHEMA_VERSIONS:
        wanted = " or ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ValueError(f"expected schema_version {wanted}, got {short_repr(value)}")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_rfc3339_only), AfterValidator(_check_utc)]
SchemaVersion = Annotated[int, AfterValidator(_check_schema_version)]
FrameBox = Annotated[
    tuple[float, float, float, float], BeforeValidator(lambda v: _check_box(v, integers=False))
]
PixelBox = Annotated[
    tuple[int, int, int, int], BeforeValidator(lambda v: _check_box(v, integers=True))
]
ConfigHash = Annotated[str, Field(pattern=r"^[A-Za-z0-9:_.-]{1,128}$")]
AgentVersion = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]
AttributeValue = (
    bool
    | Int64
    | Annotated[float, BeforeValidator(_not_an_int)]
    | Annotated[str, Field(max_length=256)]
)


class WireModel(BaseModel):
    """Base of every wire model: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, protected_namespaces=()
    )


class Detection(WireModel):
    """What the edge detector found in the frame the crop was cut from."""

    class_name: str = Field(min_length=1, max_length=128, description="Detector class label.")
    class_id: int = Field(ge=0, lt=2**31, description="Detector class index.")
    score: float = Field(ge=0.0, le=1.0, description="Detector confidence, 0..1.")
    box: FrameBox = Field(description="[x1, y1, x2, y2] in frame pixels; x1<x2, y1<y2.")
    frame_width: int = Field(gt=0, le=100_000, description="Frame width in pixels.")
    frame_height: int = Field(gt=0, le=100_000, description="Frame height in pixels.")

    @model_validator(mode="after")
    def _box_inside_frame(self) -> Detection:
        """Check that the box lies inside the frame."""
        _check_inside(self.box, width=self.frame_width, height=self.frame_height, name="box")
        return self


class Provenance(WireModel):
    """What produced the crop, so every result can be traced to a model and a config."""

    model_sha256: Sha256Hex = Field(description="sha256 (64 lowercase hex) of the edge model.")
    config_hash: ConfigHash = Field(description="Hash of the edge config applied at capture.")
    agent_version: AgentVersion = Field(description="Version of the edge agent.")


class CropHeader(WireModel):
    """The JSON header of a crop message (schema version 1)."""

    schema_version: SchemaVersion = Field(description="Header schema version; must be 1.")
    crop_id: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Stable crop id; writes are idempotent on it."
    )
    site: str = Field(pattern=f"^{SEGMENT_PATTERN.pattern}$", description="Site id.")
    camera: str = Field(pattern=f"^{SEGMENT_PATTERN.pattern}$", description="Camera id.")
    captured_at: UtcDatetime = Field(description="Timestamp of the frame (aware, UTC).")
    sent_at: UtcDatetime = Field(description="When the edge encoded the message (aware, UTC).")
    detection: Detection = Field(description="The detection the crop shows.")
    track_id: int | None = Field(
        default=None,
        ge=0,
        lt=2**63,
        description="Tracker id; null, or absent, when the detection was not tracked.",
    )
    provenance: Provenance = Field(description="Edge model, config and agent that made the crop.")
    jpeg_sha256: Sha256Hex = Field(description="sha256 (64 lowercase hex) of the JPEG payload.")
    crop_box: PixelBox | None = Field(
        default=None, description="Padded region cut from the frame, integer frame pixels."
    )
    attributes: dict[Annotated[str, Field(pattern=_KEY)], AttributeValue] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES, description="Free scalar attributes."
    )

    @model_validator(mode="after")
    def _crop_box_fits(self) -> CropHeader:
        """Check that the crop box lies inside the frame and contains the detection box."""
        if self.crop_box is not None:
            det = self.detection
            _check_inside(
                self.crop_box, width=det.frame_width, height=det.frame_height, name="crop_box"
            )
            x1, y1, x2, y2 = self.crop_box
            if not (
                x1 <= det.box[0] and y1 <= det.box[1] and det.box[2] <= x2 and det.box[3] <= y2
            ):
                raise ValueError(
                    f"crop_box must contain the detection box {list(det.box)}, "
                    f"but got {list(self.crop_box)}"
                )
        return self


class StatusMessage(WireModel):
    """The retained status of an edge agent (also its MQTT last will, with ``offline``)."""

    schema_version: SchemaVersion = Field(default=SCHEMA_VERSION, description="Must be 1.")
    state: Literal["online", "offline"] = Field(description="Whether the agent is connected.")
    agent_version: AgentVersion = Field(description="Version of the edge agent.")
    applied_config_hash: ConfigHash | None = Field(
        default=None, description="Hash of the config in force, or null before the first one."
    )
    counters: dict[Annotated[str, Field(pattern=_KEY)], Annotated[int, Field(ge=0, lt=2**63)]] = (
        Field(default_factory=dict, max_length=MAX_ATTRIBUTES, description="Running totals.")
    )
    model_sha256: Sha256Hex | None = Field(
        default=None,
        description="sha256 of the detector running now (a registry bundle's, or the model "
        "file's), as in every crop's provenance; null when not known (offline status).",
    )
    timestamp: UtcDatetime = Field(description="When the status was written (aware, UTC).")


class ConfigAck(WireModel):
    """The edge agent's answer to a config: applied, or rejected with the reason.

    ``downloading`` says the agent took the config and is fetching the model bundle it
    names (an answer that ``applied`` or ``rejected`` follows); receivers older than it
    drop it as invalid and wait for the final answer.
    """

    schema_version: SchemaVersion = Field(default=SCHEMA_VERSION, description="Must be 1.")
    hash: ConfigHash = Field(description="Hash of the config this answers.")
    status: Literal["applied", "rejected", "downloading"] = Field(
        description="What the agent did with it; downloading: fetching its model bundle first."
    )
    error: str | None = Field(
        default=None, max_length=4096, description="Why it was rejected; null when applied."
    )

    @model_validator(mode="after")
    def _error_iff_rejected(self) -> ConfigAck:
        """Check that a rejection carries a reason and an application does not."""
        if (self.status == "rejected") != bool(self.error):
            raise ValueError(
                "error must be a non-empty reason when status is 'rejected' and null "
                f"otherwise, but got status {self.status!r} with error {short_repr(self.error)}"
            )
        return self


def _check_inside(box: tuple[float, ...], *, width: int, height: int, name: str) -> None:
    """Raise ValueError unless 0 <= x1, y1 and x2 <= width, y2 <= height."""
    if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
        raise ValueError(f"{name} must lie inside the {width}x{height} frame, but got {list(box)}")


def new_crop_id() -> str:
    """Return a new crop id: a UUIDv7 string (time-ordered, 74 random bits).

    Returns:
        An id such as ``0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b``.

    """
    return uuid7(time.time_ns() // 1_000_000, os.urandom(10))


def uuid7(millis: int, random: bytes) -> str:
    """A UUIDv7 string of a Unix time in milliseconds and 10 bytes filling its 74 other bits."""
    millis &= 2**48 - 1
    rand = int.from_bytes(random[:10], "big")
    value = millis << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))
