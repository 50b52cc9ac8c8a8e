"""Spec of the crop envelope: framing, header validation and encoding.

Its fuzz properties are in test_protocol_fuzz.py; topics and the status/config-ack messages
have their own files (test_protocol_*.py).
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import cv2
import numpy as np
import pytest

from lensflow.shared.protocol import (
    ProtocolError,
    crops_topic,
    decode_crop,
    encode_crop,
    new_crop_id,
)
from tests.support.protocol_samples import (
    CAPTURED,
    FIELD_CASES,
    frame,
    header_doc,
    make_header,
    real_jpeg,
    set_path,
    valid_message,
)

# --- the happy path -----------------------------------------------------------------------


def test_round_trip_keeps_header_and_jpeg() -> None:
    decoded = decode_crop(valid_message())
    assert decoded.header == make_header()
    assert decoded.jpeg == real_jpeg()
    image = cv2.imdecode(np.frombuffer(decoded.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (32, 48, 3)


def test_message_layout_is_magic_version_length_json_jpeg() -> None:
    data = valid_message()
    (length,) = struct.unpack(">I", data[4:8])
    assert data[:4] == b"LFC\x01"
    assert json.loads(data[8 : 8 + length])["crop_id"] == "crop-0001"
    assert data[8 + length :] == real_jpeg()


@pytest.mark.parametrize("wrap", [bytearray, memoryview])  # what MQTT clients hand over
def test_decode_accepts_bytes_like_input(wrap: Callable[[bytes], Any]) -> None:
    assert decode_crop(wrap(valid_message())).header.crop_id == "crop-0001"


def test_new_crop_header_fills_id_version_hash_and_send_time() -> None:
    before = datetime.now(UTC)
    header = make_header(crop_id=None, sent_at=None)
    assert uuid.UUID(header.crop_id).version == 7
    assert header.schema_version == 1
    assert header.jpeg_sha256 == hashlib.sha256(real_jpeg()).hexdigest()
    assert before <= header.sent_at <= datetime.now(UTC)


def test_new_crop_ids_are_unique_and_time_ordered() -> None:
    ids = [new_crop_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids[0][:8] <= ids[-1][:8]


def test_aware_timestamps_are_normalized_to_utc() -> None:
    header = make_header(captured_at=CAPTURED.astimezone(timezone(timedelta(hours=2))))
    assert header.captured_at.utcoffset() == timedelta(0)
    assert header.captured_at == CAPTURED


def test_decode_accepts_the_crops_topic_of_the_header_camera() -> None:
    topic = crops_topic(site="plant-a", camera="cam01")
    assert decode_crop(valid_message(), topic=topic).header.camera == "cam01"


@pytest.mark.parametrize(
    "topic",
    [
        "lensflow/v1/plant-a/cam02/crops",  # another camera's topic: spoofed or misrouted
        "lensflow/v1/plant-a/cam01/status",  # the right camera, the wrong kind
    ],
)
def test_decode_rejects_a_topic_that_disagrees_with_the_header(topic: str) -> None:
    with pytest.raises(ProtocolError, match="must arrive on its crops topic, but came on"):
        decode_crop(valid_message(), topic=topic)


# --- framing errors -----------------------------------------------------------------------

FRAMING_CASES: list[tuple[Callable[[bytes], Any], str]] = [
    # wrong magic: not a lensflow crop message at all
    (lambda m: b"XYZ" + m[3:], "expected magic b'LFC' at bytes 0-2, got b'XYZ'"),
    # a framing version from the future
    (lambda m: m[:3] + b"\x07" + m[4:], "expected format version 1 at byte 3, got 7"),
    # cut inside the preamble
    (lambda m: m[:5], "truncated: expected at least the 8-byte preamble, got 5 bytes"),
    # empty message
    (lambda m: b"", "got 0 bytes"),
    # header length points past the end of the data
    (lambda m: m[:4] + struct.pack(">I", len(m)) + m[8:], "truncated: header length"),
    # header length zero
    (lambda m: m[:4] + struct.pack(">I", 0) + m[8:], "header length must be 2..65536"),
    # header length beyond the header limit
    (lambda m: m[:4] + b"\xff" * 4 + m[8:], "bytes, but got 4294967295"),
    # a header and no JPEG at all
    (lambda m: m[: -len(real_jpeg())], "truncated: header length"),
    # JPEG cut short in transit
    (lambda m: m[:-10], "JPEG payload sha256 mismatch: header says"),
    # one bit of the JPEG flipped
    (lambda m: m[:-1] + bytes([m[-1] ^ 1]), "JPEG payload sha256 mismatch"),
    # not bytes at all
    (lambda m: m.decode("latin-1"), "crop message must be bytes, but got str"),
]


@pytest.mark.parametrize(("mutate", "expected"), FRAMING_CASES)
def test_broken_framing_is_rejected(mutate: Callable[[bytes], Any], expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_crop(mutate(valid_message()))
    assert expected in str(caught.value)


HEADER_BYTES_CASES: list[tuple[bytes, str]] = [
    # not JSON
    (b"{not json", "crop header is not valid UTF-8 JSON"),
    # not UTF-8
    (b'{"a": "\xff\xfe"}', "crop header is not valid UTF-8 JSON: \"'utf-8' codec"),
    # JSON, but an array
    (b"[1, 2, 3]", "crop header must be a JSON object, but got list"),
    # the same key twice: parsers disagree on which wins, so neither does
    (b'{"crop_id": "a", "crop_id": "b"}', "duplicate key 'crop_id'"),
    # NaN is not JSON
    (b'{"score": NaN}', "NaN is not valid JSON"),
    # nesting deep enough to exhaust the parser's recursion
    (b"[" * 30_000 + b"]" * 30_000, "crop header is not valid UTF-8 JSON"),
]


@pytest.mark.parametrize(("raw_header", "expected"), HEADER_BYTES_CASES)
def test_header_that_is_not_a_json_object_is_rejected(raw_header: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_crop(frame(raw_header, real_jpeg()))
    assert expected in str(caught.value)


def test_oversized_message_names_both_sizes() -> None:
    size = len(valid_message())
    with pytest.raises(ProtocolError, match=f"is {size} bytes, over the limit of 1000 bytes"):
        decode_crop(valid_message(), max_bytes=1000)


def test_non_jpeg_payload_is_rejected_even_with_a_matching_hash() -> None:
    png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    doc = header_doc() | {"jpeg_sha256": hashlib.sha256(png).hexdigest()}
    with pytest.raises(ProtocolError, match="a JPEG starting with FF D8, but starts with 89 50"):
        decode_crop(frame(doc, png))


# --- header field errors ------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value", "expected"), FIELD_CASES)
def test_invalid_header_field_is_rejected(path: str, value: Any, expected: str) -> None:
    doc = header_doc()
    set_path(doc, path, value)
    with pytest.raises(ProtocolError) as caught:
        decode_crop(frame(doc, real_jpeg()))
    assert expected in str(caught.value)


def test_missing_field_is_named() -> None:
    doc = header_doc()
    del doc["crop_id"]
    with pytest.raises(ProtocolError, match="invalid crop header: crop_id: Field required"):
        decode_crop(frame(doc, real_jpeg()))


# --- encoding refuses what decoding would reject ------------------------------------------

ENCODE_CASES: list[tuple[Callable[[], object], str]] = [
    # a PNG in a JPEG envelope
    (lambda: encode_crop(make_header(), b"\x89PNG\r\n"), "a JPEG starting with FF D8"),
    # an empty payload
    (lambda: encode_crop(make_header(), b""), "but starts with nothing (empty payload)"),
    # a JPEG other than the one the header describes
    (lambda: encode_crop(make_header(), real_jpeg() + b"\0"), "sha256 mismatch"),
    # a message over the size limit
    (lambda: encode_crop(make_header(), real_jpeg(), max_bytes=100), "over the limit of 100"),
    # a header made invalid behind validation's back
    (lambda: encode_crop(make_header().model_copy(update={"site": "a/b"}), real_jpeg()), "site"),
    # a naive timestamp given to the builder
    (lambda: make_header(captured_at=datetime(2024, 5, 1)), "captured_at: must be timezone-aware"),
]


@pytest.mark.parametrize(("encode", "expected"), ENCODE_CASES)
def test_encode_refuses_invalid_input(encode: Callable[[], object], expected: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        encode()
    assert expected in str(caught.value)
