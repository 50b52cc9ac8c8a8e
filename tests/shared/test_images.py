"""Image sniffing spec: an image's type comes from its magic bytes, and refused data is named."""

from __future__ import annotations

import cv2
import pytest

from shared.classifiers.base import Image
from shared.images import describe_content, sniff_image_type


@pytest.mark.parametrize(
    ("suffix", "media_type"),
    [
        (".jpg", "image/jpeg"),
        (".png", "image/png"),
        (".webp", "image/webp"),
        (".bmp", None),  # OpenCV reads it, but it is not among the accepted types
    ],
)
def test_real_encodings_are_sniffed_by_their_magic_bytes(
    sample_images: dict[str, Image], suffix: str, media_type: str | None
) -> None:
    ok, buffer = cv2.imencode(suffix, sample_images["zidane"])
    assert ok

    assert sniff_image_type(buffer.tobytes()[:16]) == media_type


@pytest.mark.parametrize(
    ("head", "described"),
    [
        (b"hello, world\n", "text"),  # a note saved as x.jpg
        ("naïve café ñ".encode(), "text"),  # UTF-8, a character cut at the 16th byte
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "a PDF document"),
        (b"GIF89a\x01\x00\x01\x00", "a GIF image"),
        (b"\x00\x01\x02\x03\xfe", "unknown data"),
        (b"", "empty data"),
    ],
)
def test_refused_data_is_described_with_its_leading_bytes(head: bytes, described: str) -> None:
    text = describe_content(head)

    assert text.startswith(described)
    assert head[:16].hex() in text
