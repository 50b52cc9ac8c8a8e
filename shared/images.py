"""Image decoding and the real sample images that ship inside installed packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from shared.classifiers.base import Image
from shared.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
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


def decode_image(data: bytes, *, what: str = "image") -> Image:
    """Decode encoded image bytes (JPEG, PNG, ...) into a BGR uint8 array.

    Raises:
        ImageError: the bytes are empty or not a decodable image.

    """
    if not data:
        raise ImageError(f"{what}: expected encoded image bytes, got 0 bytes")
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if array is None:
        raise ImageError(
            f"{what}: expected a JPEG/PNG/BMP/WebP image, got {len(data)} bytes that do not "
            f"decode (starting {data[:8].hex()})"
        )
    return array.astype(np.uint8, copy=False)


def read_image(path: str | Path) -> Image:
    """Read an image file into a BGR uint8 array.

    Raises:
        ImageError: the file is missing, unreadable or not an image.

    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ImageError(f"{file}: cannot read image file: {err}") from err
    return decode_image(data, what=str(file))


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
