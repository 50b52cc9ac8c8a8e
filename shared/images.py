"""Image decoding and the real sample images that ship inside installed packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from shared.classifiers.base import Image
from shared.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


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
