"""Image sniffing spec: an image's type comes from its magic bytes, and refused data is named."""

from __future__ import annotations

import struct

import cv2
import pytest

from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import ImageError
from lensflow.shared.images import decode_image, describe_content, image_size, sniff_image_type


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


@pytest.mark.parametrize(
    ("suffix", "params"),
    [
        (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".png", []),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy: VP8
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
    ],
)
@pytest.mark.parametrize("shape", [(480, 640), (37, 1001), (1, 1)])
def test_image_size_reads_the_header_of_real_encodings(
    sample_images: dict[str, Image], suffix: str, params: list[int], shape: tuple[int, int]
) -> None:
    image = cv2.resize(sample_images["bus"], (shape[1], shape[0]))
    ok, buffer = cv2.imencode(suffix, image, params)
    assert ok

    assert image_size(buffer.tobytes()) == (shape[1], shape[0])


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding() -> None:
    # a 67-byte PNG header declaring a 100,000 x 100,000 canvas (40 GB decoded)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    bomb += struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0) + b"\x00" * 40

    assert image_size(bomb) == (100_000, 100_000)
    with pytest.raises(ImageError, match=r"expected at most 1,000,000 pixels, got a 100000x100000"):
        decode_image(bomb, what="upload", max_pixels=1_000_000)


def test_unknown_data_has_no_size_and_small_images_decode_under_the_limit(
    sample_images: dict[str, Image],
) -> None:
    assert image_size(b"not an image at all") is None
    ok, buffer = cv2.imencode(".jpg", sample_images["zidane"])
    assert ok
    decoded = decode_image(buffer.tobytes(), max_pixels=1280 * 720)
    assert decoded.shape[:2] == sample_images["zidane"].shape[:2]


def _bomb_headers() -> dict[str, bytes]:
    """Small files whose headers declare 30000x30000 (900 MP), one per format."""
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (30000).to_bytes(4, "big") * 2
    webp = b"RIFF" + b"\x00" * 4 + b"WEBPVP8X" + b"\x00" * 8 + (29999).to_bytes(3, "little") * 2
    sof = b"\xff\xc0\x00\x11\x08" + (30000).to_bytes(2, "big") * 2 + b"\x03" + b"\x00" * 9
    jpeg = b"\xff\xd8" + sof + b"\xff\xd9"
    bmp = b"BM" + b"\x00" * 16 + (30000).to_bytes(4, "little") * 2 + b"\x00" * 30
    return {"png": png, "webp": webp, "jpeg": jpeg, "bmp": bmp}


@pytest.mark.parametrize("kind", ["png", "webp", "jpeg", "bmp"])
def test_every_format_is_gated_by_its_header_before_decoding(kind: str) -> None:
    with pytest.raises(ImageError, match="expected at most 50,000,000 pixels, got a 30000x30000"):
        decode_image(_bomb_headers()[kind], what=kind)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        # a format whose size cannot be read (a TIFF) is not decoded at all
        (b"II*\x00" + b"\x00" * 64, "with a readable size, got a TIFF image"),
        (b"", "got 0 bytes"),
    ],
)
def test_what_the_gate_cannot_size_is_refused(data: bytes, error: str) -> None:
    with pytest.raises(ImageError, match=error):
        decode_image(data)
