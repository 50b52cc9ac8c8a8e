"""The versioned crop envelope, and the codecs of the small JSON messages.

A crop message is ``b"LFC"`` + 1 format byte + 4-byte big-endian header length + a UTF-8
JSON header (:class:`~lensflow.shared.protocol.messages.CropHeader`) + the raw JPEG bytes;
``docs/protocol.md`` describes it byte by byte. Every ``decode_*`` function returns a valid
message or raises :class:`~lensflow.shared.errors.ProtocolError`, whatever bytes it is given, so a
worker can route a bad message to its dead-letter record instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from lensflow.shared.errors import ProtocolError
from lensflow.shared.protocol.codec import describe, parse_json, revalidated_json, sized_bytes
from lensflow.shared.protocol.messages import (
    SCHEMA_VERSION,
    ConfigAck,
    CropHeader,
    Detection,
    Provenance,
    StatusMessage,
    new_crop_id,
    short_repr,
)
from lensflow.shared.protocol.topics import TopicKind, parse_topic

MAGIC = b"LFC"
"""First three bytes of every crop message."""
FORMAT_VERSION = 1
"""Version of the binary framing (byte 3); bumped only if the preamble layout changes."""
PREAMBLE = struct.Struct(">3sBI")
"""Magic, format version, header length as a big-endian uint32: 8 bytes."""
MIN_HEADER_BYTES = 2
"""Shortest JSON header the framing allows (``{}``), in bytes."""
MAX_HEADER_BYTES = 64 * 1024
"""Largest JSON header accepted, in bytes."""
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The one size limit of a crop message: the edge never sends more, the worker accepts no more
(``max_message_bytes`` may only lower it) and the broker refuses larger packets."""
MQTT_PACKET_OVERHEAD = 1024
"""Room for an MQTT packet's fixed header, topic and properties around a crop message."""
MAX_PACKET_BYTES = DEFAULT_MAX_MESSAGE_BYTES + MQTT_PACKET_OVERHEAD
"""The broker's ``max_packet_size``: the crop limit plus the packet overhead."""
"""Largest whole crop message accepted by default (preamble + header + JPEG), in bytes."""
MAX_JSON_MESSAGE_BYTES = 64 * 1024
"""Largest status or config-ack message accepted, in bytes."""
JPEG_SOI = b"\xff\xd8"
"""Start-of-image marker every JPEG payload begins with."""


@dataclass(frozen=True)
class CropMessage:
    """A decoded, verified crop message.

    Attributes:
        header: The validated header.
        jpeg: The JPEG bytes; their sha256 equals ``header.jpeg_sha256``.

    """

    header: CropHeader
    jpeg: bytes


def new_crop_header(
    *,
    jpeg: bytes,
    site: str,
    camera: str,
    captured_at: datetime,
    detection: Detection,
    provenance: Provenance,
    track_id: int | None = None,
    crop_box: tuple[int, int, int, int] | None = None,
    attributes: dict[str, str | int | float | bool] | None = None,
    crop_id: str | None = None,
    sent_at: datetime | None = None,
) -> CropHeader:
    """Build a header for ``jpeg``, filling in the version, id, hash and send time.

    Args:
        jpeg: The JPEG payload the header describes; its sha256 goes into the header.
        site: Site id.
        camera: Camera id.
        captured_at: Timestamp of the frame (timezone-aware).
        detection: The detection the crop shows.
        provenance: Edge model, config and agent that made the crop.
        track_id: Tracker id, if the detection was tracked.
        crop_box: Padded region cut from the frame, in integer frame pixels.
        attributes: Free scalar attributes.
        crop_id: Crop id; a new one from :func:`new_crop_id` if not given.
        sent_at: Send time; now (UTC) if not given.

    Returns:
        The validated header.

    Raises:
        ProtocolError: If a field is invalid.

    """
    try:
        return CropHeader(
            schema_version=SCHEMA_VERSION,
            crop_id=new_crop_id() if crop_id is None else crop_id,
            site=site,
            camera=camera,
            captured_at=captured_at,
            sent_at=datetime.now(UTC) if sent_at is None else sent_at,
            detection=detection,
            track_id=track_id,
            provenance=provenance,
            jpeg_sha256=hashlib.sha256(_checked_jpeg(jpeg)).hexdigest(),
            crop_box=crop_box,
            attributes={} if attributes is None else attributes,
        )
    except ValidationError as err:
        raise ProtocolError(f"invalid crop header: {describe(err)}") from err


def encode_crop(
    header: CropHeader, jpeg: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> bytes:
    """Frame a header and its JPEG into one crop message.

    Args:
        header: The header; it is re-validated, so a ``model_copy(update=...)`` can't slip by.
        jpeg: The JPEG bytes; must start with FF D8 and hash to ``header.jpeg_sha256``.
        max_bytes: Largest message allowed, in bytes.

    Returns:
        The message bytes.

    Raises:
        ProtocolError: If the header is invalid, the payload is not JPEG or does not match
            the header's hash, or the message would be larger than ``max_bytes``.

    """
    raw_header = revalidated_json(header, what="crop header")
    _check_hash(header, _checked_jpeg(jpeg))
    if len(raw_header) > MAX_HEADER_BYTES:
        raise ProtocolError(
            f"crop header must be at most {MAX_HEADER_BYTES} bytes, but is {len(raw_header)} bytes"
        )
    size = PREAMBLE.size + len(raw_header) + len(jpeg)
    if size > max_bytes:
        raise ProtocolError(f"crop message is {size} bytes, over the limit of {max_bytes} bytes")
    return PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(raw_header)) + raw_header + bytes(jpeg)


def decode_crop(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, topic: str | None = None
) -> CropMessage:
    """Parse and verify a crop message.

    Args:
        data: The message bytes, as received.
        max_bytes: Largest message accepted, in bytes.
        topic: The topic it arrived on; if given, it must be the crops topic of the header's
            site and camera.

    Returns:
        The verified message.

    Raises:
        ProtocolError: If anything about the message is invalid; never any other exception.

    """
    raw = sized_bytes(data, max_bytes=max_bytes, what="crop message")
    if len(raw) < PREAMBLE.size:
        raise ProtocolError(
            f"crop message is truncated: expected at least the {PREAMBLE.size}-byte preamble, "
            f"got {len(raw)} bytes"
        )
    magic, version, header_len = PREAMBLE.unpack_from(raw)
    if magic != MAGIC:
        raise ProtocolError(f"expected magic {MAGIC!r} at bytes 0-2, got {magic!r}")
    if version != FORMAT_VERSION:
        raise ProtocolError(f"expected format version {FORMAT_VERSION} at byte 3, got {version}")
    if not MIN_HEADER_BYTES <= header_len <= MAX_HEADER_BYTES:
        raise ProtocolError(
            f"header length must be {MIN_HEADER_BYTES}..{MAX_HEADER_BYTES} bytes, "
            f"but got {header_len}"
        )
    payload_at = PREAMBLE.size + header_len
    if payload_at >= len(raw):
        raise ProtocolError(
            f"crop message is truncated: header length {header_len} plus a non-empty JPEG needs "
            f"more than the {len(raw) - PREAMBLE.size} bytes after the preamble"
        )
    header = parse_json(CropHeader, raw[PREAMBLE.size : payload_at], what="crop header")
    jpeg = raw[payload_at:]
    _check_hash(header, _checked_jpeg(jpeg))
    if topic is not None:
        parts = parse_topic(topic)
        if (parts.kind, parts.site, parts.camera) != (TopicKind.CROPS, header.site, header.camera):
            raise ProtocolError(
                f"crop of site {header.site!r} camera {header.camera!r} must arrive on its "
                f"crops topic, but came on {short_repr(topic)}"
            )
    return CropMessage(header=header, jpeg=jpeg)


_CROP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def peek_crop_id(data: object) -> str | None:
    """The ``crop_id`` of a crop message whose header is readable JSON, else None; never raises.

    For the dead letter of a message that fails :func:`decode_crop` further on (a bad JPEG
    hash, a bad field): the record names the crop, and the edge can be told it was handled.
    """
    try:
        raw = bytes(data)  # type: ignore[call-overload]
        magic, version, header_len = PREAMBLE.unpack_from(raw)
        if magic != MAGIC or version != FORMAT_VERSION or header_len > MAX_HEADER_BYTES:
            return None
        header = json.loads(raw[PREAMBLE.size : PREAMBLE.size + header_len].decode("utf-8"))
        crop_id = header.get("crop_id") if isinstance(header, dict) else None
    except (TypeError, ValueError, struct.error, RecursionError):
        return None
    return crop_id if isinstance(crop_id, str) and _CROP_ID.match(crop_id) else None


def encode_status(message: StatusMessage) -> bytes:
    """Serialize a status message to UTF-8 JSON (re-validating it).

    Raises:
        ProtocolError: If the message is invalid.

    """
    return revalidated_json(message, what="status message")


def decode_status(data: bytes, *, max_bytes: int = MAX_JSON_MESSAGE_BYTES) -> StatusMessage:
    """Parse a status message.

    Raises:
        ProtocolError: If the bytes are not a valid status message; never another exception.

    """
    raw = sized_bytes(data, max_bytes=max_bytes, what="status message")
    return parse_json(StatusMessage, raw, what="status message")


def encode_config_ack(ack: ConfigAck) -> bytes:
    """Serialize a config acknowledgement to UTF-8 JSON (re-validating it).

    Raises:
        ProtocolError: If the acknowledgement is invalid.

    """
    return revalidated_json(ack, what="config ack")


def decode_config_ack(data: bytes, *, max_bytes: int = MAX_JSON_MESSAGE_BYTES) -> ConfigAck:
    """Parse a config acknowledgement.

    Raises:
        ProtocolError: If the bytes are not a valid config ack; never another exception.

    """
    raw = sized_bytes(data, max_bytes=max_bytes, what="config ack")
    return parse_json(ConfigAck, raw, what="config ack")


def _checked_jpeg(jpeg: object) -> bytes:
    """Return the payload if it is non-empty bytes starting with the JPEG SOI marker."""
    if not isinstance(jpeg, bytes | bytearray | memoryview):
        raise ProtocolError(f"JPEG payload must be bytes, but got {type(jpeg).__name__}")
    payload = bytes(jpeg)
    if not payload.startswith(JPEG_SOI):
        start = payload[:4].hex(" ").upper() or "nothing (empty payload)"
        raise ProtocolError(f"payload must be a JPEG starting with FF D8, but starts with {start}")
    return payload


def _check_hash(header: CropHeader, jpeg: bytes) -> None:
    """Raise ProtocolError unless the payload hashes to ``header.jpeg_sha256``."""
    digest = hashlib.sha256(jpeg).hexdigest()
    if digest != header.jpeg_sha256:
        raise ProtocolError(
            f"JPEG payload sha256 mismatch: header says {header.jpeg_sha256}, payload is {digest}"
        )
