"""A valid crop message and its parts, built by hand, for the protocol tests to read and
tamper with."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np

from lensflow.shared.protocol import (
    MAGIC,
    PREAMBLE,
    CropHeader,
    Detection,
    Provenance,
    encode_crop,
    new_crop_header,
)

CAPTURED = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


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
    ("captured_at", "2024-05-01T12:00:00", "captured_at: expected an RFC 3339 timestamp with an"),
    # a unix timestamp instead of RFC 3339
    ("sent_at", 1714564800, "sent_at: expected an RFC 3339 timestamp with an offset"),
    # ... also as a string of digits (pydantic alone would read it as epoch seconds)
    ("sent_at", "1712345678", "sent_at: expected an RFC 3339 timestamp with an offset"),
    # a date that is not one
    ("captured_at", "2024-02-30T12:00:00Z", "captured_at: expected a valid RFC 3339 timestamp"),
    # an integer beyond 64 bits (it must not turn into an inexact float)
    ("attributes", {"big": 2**64}, "expected a 64-bit integer or a float, got the integer"),
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
