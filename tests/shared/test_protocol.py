"""Spec of the crop envelope: framing, header validation, encoding, and its fuzz properties.

Topics and the status/config-ack messages have their own files (test_protocol_*.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import string
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocol import (
    MAGIC,
    PREAMBLE,
    CropHeader,
    Detection,
    ProtocolError,
    Provenance,
    crops_topic,
    decode_crop,
    encode_crop,
    new_crop_header,
    new_crop_id,
)

CAPTURED = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def real_jpeg() -> bytes:
    """A real 48x32 JPEG made by OpenCV."""
    image = np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    assert ok
    return buffer.tobytes()


def make_header(**overrides: Any) -> CropHeader:
    box = (10, 20, 110, 220)
    fields: dict[str, Any] = {
        "jpeg": real_jpeg(),
        "site": "plant-a",
        "camera": "cam01",
        "captured_at": CAPTURED,
        "detection": Detection(
            class_name="car", class_id=2, score=0.9, box=box, frame_width=640, frame_height=480
        ),
        "provenance": Provenance(model_sha256="ab" * 32, config_hash="c1", agent_version="0.1"),
        "crop_id": "crop-0001",
        "sent_at": CAPTURED + timedelta(seconds=1),
        "track_id": 7,
        "crop_box": (0, 0, 130, 240),
    }
    return new_crop_header(**(fields | overrides))


@functools.cache
def valid_message() -> bytes:
    return encode_crop(make_header(), real_jpeg())


def header_doc() -> dict[str, Any]:
    """The JSON header of the valid message, as a dict to tamper with."""
    doc: dict[str, Any] = json.loads(make_header().model_dump_json())
    return doc


def frame(header: dict[str, Any] | bytes, jpeg: bytes) -> bytes:
    """Frame a (possibly invalid) header by hand, the way a foreign encoder would."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return PREAMBLE.pack(MAGIC, 1, len(raw)) + raw + jpeg


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path (``detection.box``) in a header document."""
    *parents, leaf = path.split(".")
    for key in parents:
        doc = doc[key]
    doc[leaf] = value


def assert_decodes_or_protocol_error(data: bytes) -> None:
    try:
        message = decode_crop(data)
    except ProtocolError:
        return
    assert hashlib.sha256(message.jpeg).hexdigest() == message.header.jpeg_sha256


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

FIELD_CASES: list[tuple[str, Any, str]] = [
    # a header version this build does not know
    ("schema_version", 7, "expected schema_version 1, got 7"),
    # a version as a string is not a version
    ("schema_version", "1", "expected schema_version 1, got '1'"),
    # inverted box
    ("detection.box", [10, 5, 3, 8], "box must be 4 numbers with x1<x2 and y1<y2, but got [10, "),
    # a box of 3 numbers
    ("detection.box", [1, 2, 3], "with x1<x2 and y1<y2, but got [1, 2, 3]"),
    # a box past the right edge of the frame
    ("detection.box", [600, 0, 700, 10], "box must lie inside the 640x480 frame, but got [600"),
    # a score above 1
    ("detection.score", 1.5, "detection.score: Input should be less than or equal to 1 (got 1.5)"),
    # a score as a string: types are strict
    ("detection.score", "0.9", "detection.score: Input should be a valid number"),
    # a frame without width
    ("detection.frame_width", 0, "detection.frame_width: Input should be greater than 0"),
    # a boolean where a class index belongs
    ("detection.class_id", True, "detection.class_id: Input should be a valid integer"),
    # naive datetime: ambiguous across time zones
    ("captured_at", "2024-05-01T12:00:00", "captured_at: must be timezone-aware (UTC), but got"),
    # a unix timestamp instead of RFC 3339
    ("sent_at", 1714564800, "sent_at: Input should be a valid datetime"),
    # an unknown top-level field
    ("colour", "red", "colour: Extra inputs are not permitted (got 'red')"),
    # an unknown nested field
    ("detection.colour", "red", "detection.colour: Extra inputs are not permitted"),
    # crop id with a slash
    ("crop_id", "a/b", "crop_id: String should match pattern"),
    # site that could not be a topic segment
    ("site", "plant+a", "site: String should match pattern"),
    # model hash not 64 lowercase hex
    ("provenance.model_sha256", "AB" * 32, "provenance.model_sha256: String should match"),
    # negative track id
    ("track_id", -1, "track_id: Input should be greater than or equal to 0"),
    # crop box that does not contain the detection
    ("crop_box", [50, 50, 300, 300], "crop_box must contain the detection box [10.0, 20.0"),
    # crop box in fractional pixels
    ("crop_box", [0.5, 0, 130, 240], "box must be 4 integers with x1<x2 and y1<y2"),
    # nested attribute value
    ("attributes", {"a": [1]}, "attributes.a"),
    # too many attributes
    ("attributes", {f"k{i}": i for i in range(33)}, "Dictionary should have at most 32 items"),
]


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


# --- properties: decode never fails with anything but ProtocolError -----------------------

PREAMBLED = st.builds(
    lambda n, rest: PREAMBLE.pack(MAGIC, 1, n) + rest, st.integers(0, 300), st.binary()
)


@FUZZ
@given(st.binary(max_size=2048) | PREAMBLED)
def test_decode_of_arbitrary_bytes_returns_or_raises_protocol_error(data: bytes) -> None:
    assert_decodes_or_protocol_error(data)


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("splice"), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
)


def mutated(data: bytes, kind: str, at: int, arg: Any) -> bytes:
    at %= len(data)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ arg]) + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "splice":
        return data[:at] + bytes(arg) + data[at:]
    return data[:at] + data[at + arg :]


@FUZZ
@given(st.lists(MUTATIONS, min_size=1, max_size=4))
def test_decode_of_a_mutated_message_returns_or_raises_protocol_error(steps: list[Any]) -> None:
    data = valid_message()
    for step in steps:
        data = mutated(data, *step) if data else data
    assert_decodes_or_protocol_error(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FIELDS = st.sampled_from([path for path, _, _ in FIELD_CASES] + ["captured_at", "detection"])


@FUZZ
@given(FIELDS, JSON_VALUES)
def test_decode_of_any_json_in_any_field_returns_or_raises_protocol_error(
    path: str, value: Any
) -> None:
    doc = header_doc()
    set_path(doc, path, value)
    assert_decodes_or_protocol_error(frame(json.dumps(doc).encode(), real_jpeg()))


# --- properties: valid headers round-trip -------------------------------------------------

SEGMENTS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1), timezones=OFFSETS)
SCALARS = st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=256)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
ATTRIBUTES = st.dictionaries(
    st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z"), SCALARS | FINITE, max_size=32
)


@st.composite
def detections(draw: st.DrawFn) -> Detection:
    width, height = draw(st.integers(1, 8000)), draw(st.integers(1, 8000))
    xs = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2, unique=True)))
    ys = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2, unique=True)))
    return Detection(
        class_name=draw(st.text(min_size=1, max_size=128)),
        class_id=draw(st.integers(0, 2**31 - 1)),
        score=draw(st.floats(0, 1)),
        box=(xs[0], ys[0], xs[1], ys[1]),
        frame_width=width,
        frame_height=height,
    )


@st.composite
def crop_headers(draw: st.DrawFn) -> CropHeader:
    det = draw(detections())
    x1, y1, x2, y2, width, height = *det.box, det.frame_width, det.frame_height
    padded = (int(x1), int(y1), min(int(x2) + 1, width), min(int(y2) + 1, height))
    return make_header(
        site=draw(SEGMENTS),
        camera=draw(SEGMENTS),
        captured_at=draw(MOMENTS),
        sent_at=draw(MOMENTS),
        detection=det,
        crop_id=draw(st.none() | st.text(string.ascii_letters + "_-", min_size=1, max_size=64)),
        track_id=draw(st.none() | st.integers(0, 2**63 - 1)),
        crop_box=draw(st.none() | st.just(padded)),
        provenance=Provenance(
            model_sha256=draw(st.from_regex(r"\A[0-9a-f]{64}\Z")),
            config_hash=draw(st.from_regex(r"\A[A-Za-z0-9:_.-]{1,128}\Z")),
            agent_version="1.2.3+edge",
        ),
        attributes=draw(ATTRIBUTES),
    )


@FUZZ
@given(crop_headers())
def test_valid_headers_round_trip_exactly(header: CropHeader) -> None:
    decoded = decode_crop(encode_crop(header, real_jpeg()))
    assert decoded.header.model_dump_json() == header.model_dump_json()
    assert decoded.jpeg == real_jpeg()
