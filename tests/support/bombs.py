"""Decompression bombs: small files whose headers declare a huge canvas, built by hand.

Each is a well-formed file of its format up to the point a decoder allocates the canvas, so
a decoder that trusted the header would spend ``width * height * 3`` bytes (and the time to
fill them) before finding out the data is short.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np

_SOF0 = b"\xff\xc0"


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real baseline JPEG (OpenCV's, 16x16 of grey) whose SOF0 says ``width x height``.

    libjpeg decodes what data there is and fills the rest, so without a gate this allocates
    and writes the whole canvas: 333 bytes of 30000x30000 decode to 2.7 GB of BGR (5.2 GB at
    the decoder's peak, 14 s here), as the attacker's 670 bytes took 5.77 GB.
    """
    ok, buffer = cv2.imencode(".jpg", np.full((16, 16), 128, np.uint8))
    assert ok
    data = bytearray(buffer.tobytes())
    at = data.index(_SOF0)
    # SOF0: marker, length (2), precision (1), height (2), width (2), components...
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@functools.cache
def png_bomb(width: int, height: int) -> bytes:
    """A complete 8-bit greyscale PNG of zeros: every row is there, deflated ~1000:1.

    20000x20000 is 389 KB and decodes to 1.2 GB of BGR (2.3 GB at the decoder's peak).
    """
    rows = zlib.compressobj(9)
    row = bytes(1 + width)  # filter type 0, then the pixels
    idat = b"".join(rows.compress(row) for _ in range(height)) + rows.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: length, type, body, CRC of type and body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# a lossless bitstream of one uniform colour, from libwebp's 1x1 encoding: every Huffman code
# has a single symbol, so a pixel costs 0 bits and it decodes at whatever size the header says
_VP8L_UNIFORM = bytes.fromhex("07d0a636b5a9ff8188e87f00")


def webp_lossless_bomb(width: int, height: int) -> bytes:
    """A 38-byte lossless WebP (``VP8L``) of ``width x height`` (at most 16384) that decodes.

    16383x16383 decodes to 805 MB of BGR (1.6 GB at the decoder's peak) in about a second.
    """
    bits = (width - 1) | (height - 1) << 14  # no alpha, version 0
    return _riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + _VP8L_UNIFORM)


def webp_lossy_bomb(width: int, height: int) -> bytes:
    """A lossy WebP (``VP8 ``) key frame header declaring ``width x height`` (< 16384).

    Only the header: libwebp finds the data short before it allocates the canvas.
    """
    frame_tag = bytes([0x10, 0x02, 0x00])  # key frame, version 0, shown, first partition size
    header = frame_tag + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return _riff(b"VP8 ", header + bytes(64))


def webp_extended_bomb(width: int, height: int) -> bytes:
    """An extended WebP (``VP8X``): a ``width x height`` canvas around the lossless bomb."""
    vp8x = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    inner = webp_lossless_bomb(min(width, 16384), min(height, 16384))[12:]  # its chunk
    return _riff(b"VP8X", vp8x, tail=inner)


def _riff(kind: bytes, body: bytes, *, tail: bytes = b"") -> bytes:
    """``RIFF <size> WEBP`` around one chunk (and any chunks after it)."""
    chunk = kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")
    payload = b"WEBP" + chunk + tail
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


BOMBS: dict[str, tuple[Callable[[int, int], bytes], str]] = {
    "jpeg": (jpeg_bomb, "image/jpeg"),
    "png": (png_bomb, "image/png"),
    "webp-lossy": (webp_lossy_bomb, "image/webp"),
    "webp-lossless": (webp_lossless_bomb, "image/webp"),
    "webp-extended": (webp_extended_bomb, "image/webp"),
}
"""Each bomb's builder and media type, by name."""
