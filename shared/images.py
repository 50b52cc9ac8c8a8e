"""Image decoding and the real sample images that ship inside installed packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_MAX_PIXELS = 50_000_000
"""The most pixels any decoder here accepts unless told otherwise (a 50 MP photo)."""
SNIFF_BYTES = 16
"""How many leading bytes :func:`sniff_image_type` and :func:`describe_content` look at."""

# (leading bytes, name) of what uploads commonly hold, to say what a refused one is
_OTHER_MAGIC = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"<?xml", "XML text"),
    (b"\x00\x00\x00", "an ISO media file (HEIC, AVIF, MP4...)"),
)


def sniff_image_type(head: bytes) -> str | None:
    """The media type of a JPEG, PNG or WebP by its leading (magic) bytes, whatever its name.

    Args:
        head: The first :data:`SNIFF_BYTES` bytes (or more) of the data.

    Returns:
        ``image/jpeg``, ``image/png`` or ``image/webp``; None for anything else.

    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def describe_content(head: bytes) -> str:
    """Say what data starting with ``head`` looks like, for an error message.

    Args:
        head: The first :data:`SNIFF_BYTES` bytes (or more) of the data.

    Returns:
        E.g. ``a PDF document``, ``text``, ``empty data`` or ``unknown data``, with the
        leading bytes in hex.

    """
    if not head:
        return "empty data"
    shown = head[:SNIFF_BYTES].hex()
    kind = sniff_image_type(head) or next(
        (name for magic, name in _OTHER_MAGIC if head.startswith(magic)), None
    )
    if kind is None:
        kind = "text" if _looks_like_text(head[:SNIFF_BYTES]) else "unknown data"
    return f"{kind} (starting {shown})"


def _looks_like_text(head: bytes) -> bool:
    """Whether bytes read as printable UTF-8 (a character cut at the end allowed)."""
    text = head.decode("utf-8", errors="replace").rstrip("\ufffd")
    return bool(text) and all(char.isprintable() or char in "\t\r\n" for char in text)


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG, PNG, WebP or BMP header, without decoding; None if unknown.

    Lets a caller refuse an image that would decode to too many pixels (a small file can
    declare a huge canvas) before any memory is spent on it.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(
                data[27:30], "little"
            )
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            return (
                int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF,
            )
        return None
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data.startswith(b"BM") and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width), abs(height)  # a negative height is a top-down bitmap
    return None


def check_image_header(data: bytes, *, what: str, max_pixels: int) -> tuple[int, int]:
    """The gate before every decoder: the size the header declares, within ``max_pixels``.

    A small file can declare a huge canvas (a 670-byte JPEG of 30000x30000 decodes to 2.7 GB),
    so nothing is decoded before this passes. Only formats whose size this reads (JPEG, PNG,
    WebP, BMP) get through.

    Args:
        data: The encoded bytes (the first kilobytes are enough for the header).
        what: Names the image in errors.
        max_pixels: The most pixels accepted.

    Returns:
        ``(width, height)``.

    Raises:
        ImageError: Empty, a format whose size cannot be read, a zero size, or too many pixels.

    """
    if not data:
        raise ImageError(f"{what}: expected encoded image bytes, got 0 bytes")
    size = image_size(data)
    if size is None:
        raise ImageError(
            f"{what}: expected a JPEG, PNG, WebP or BMP image with a readable size, got "
            f"{describe_content(data[:SNIFF_BYTES])}"
        )
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{what}: expected a positive size, got {width}x{height} in the header")
    if width * height > max_pixels:
        raise ImageError(
            f"{what}: expected at most {max_pixels:,} pixels, got a {width}x{height} image "
            f"({width * height:,} pixels) in {len(data):,} bytes"
        )
    return size


_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's marker segments to its start-of-frame, which holds the size."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _JPEG_SOF and at + 9 <= len(data):
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width, height
        if length < 2:
            return None
        at += 2 + length
    return None


def decode_image(
    data: bytes, *, what: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image:
    """Decode encoded image bytes (JPEG, PNG, WebP, BMP) into a BGR uint8 array.

    Every decode goes through :func:`check_image_header` first: nothing is decoded whose
    header does not declare a readable size within ``max_pixels``.

    Args:
        data: The encoded bytes.
        what: Names the image in errors.
        max_pixels: Refuse, before decoding, an image whose header declares more pixels.

    Raises:
        ImageError: the bytes are empty, declare too many pixels (or no readable size), or
            are not a decodable image.

    """
    check_image_header(data, what=what, max_pixels=max_pixels)
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if array is None:
        raise ImageError(
            f"{what}: expected a JPEG/PNG/BMP/WebP image, got {len(data)} bytes that do not "
            f"decode (starting {data[:8].hex()})"
        )
    return array.astype(np.uint8, copy=False)


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file into a BGR uint8 array (through :func:`check_image_header`).

    Raises:
        ImageError: the file is missing, unreadable, too large or not an image.

    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ImageError(f"{file}: cannot read image file: {err}") from err
    return decode_image(data, what=str(file), max_pixels=max_pixels)


def sample_image_paths() -> list[Path]:
    """The real photos that ship in the ``ultralytics`` wheel (bus.jpg, zidane.jpg).

    Found without importing ultralytics (its import has side effects).

    Raises:
        ImageError: ultralytics is not installed, so there are no sample images.

    """
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise ImageError(
            "sample images ship in the 'ultralytics' package, which is not "
            "installed: pip install 'lensflow[export]'"
        )
    assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
    paths = sorted(p for p in assets.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImageError(f"no sample images found in {assets}")
    return paths
