"""Fuzz properties of the crop envelope: decode never fails with anything but ProtocolError,
and valid headers round-trip exactly."""

from __future__ import annotations

import hashlib
import json
import string
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensflow.shared.protocol import (
    MAGIC,
    PREAMBLE,
    CropHeader,
    Detection,
    ProtocolError,
    Provenance,
    decode_crop,
    encode_crop,
)
from tests.support.hypothesis_profiles import examples
from tests.support.protocol_samples import (
    FIELD_CASES,
    frame,
    header_doc,
    make_header,
    real_jpeg,
    set_path,
    valid_message,
)

FUZZ = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_decodes_or_protocol_error(data: bytes) -> None:
    try:
        message = decode_crop(data)
    except ProtocolError:
        return
    assert hashlib.sha256(message.jpeg).hexdigest() == message.header.jpeg_sha256


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
