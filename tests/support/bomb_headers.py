"""Decompression-bomb headers: a few dozen bytes declaring a huge canvas, built by hand.

The gate (:func:`lensflow.shared.images.check_image_header`) reads only the header, so these
are enough to show an image is refused before any decoder sees it.
"""

from __future__ import annotations

BOMB_KINDS = ("jpeg", "png", "webp")


def bomb_header(kind: str, *, width: int = 20000, height: int = 20000) -> bytes:
    """A small file of ``kind`` (jpeg, png, webp) whose header declares ``width x height``."""
    if kind == "jpeg":  # SOI, then a SOF0 segment: precision, height, width, 3 components
        sof = b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
        return b"\xff\xd8" + sof + b"\x03" + b"\x00" * 9 + b"\xff\xd9"
    if kind == "png":  # signature, then IHDR: width, height, 8-bit RGB
        ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
        return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + ihdr + b"\x00" * 40
    if kind == "webp":  # RIFF/WEBP, then a VP8X chunk: flags, canvas width-1 and height-1
        size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        return b"RIFF" + b"\x00" * 4 + b"WEBPVP8X" + b"\x00" * 8 + size + b"\x00" * 16
    raise ValueError(f"expected one of {BOMB_KINDS}, got {kind!r}")
