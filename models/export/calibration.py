"""Calibration and hold-out image folders for quantization and the accuracy gate."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import ImageError, ModelError
from lensflow.shared.images import IMAGE_SUFFIXES, read_image

logger = logging.getLogger(__name__)


def image_files(folder: Path, *, limit: int | None = None) -> list[Path]:
    """The image files of ``folder`` in name order (at most ``limit``).

    Raises:
        ModelError: the folder is missing or holds no images.
    """
    if not folder.is_dir():
        raise ModelError(f"expected a folder of images, got {folder} (not a folder)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ModelError(f"expected images ({suffixes}) in {folder}, found none")
    return files[:limit] if limit else files


def load_images(folder: Path, *, limit: int | None = None) -> list[tuple[Path, Image]]:
    """Read the images of ``folder``; an unreadable file is skipped with a warning."""
    images = []
    for path in image_files(folder, limit=limit):
        try:
            images.append((path, read_image(path)))
        except ImageError as err:
            logger.warning("skipping %s: %s", path, err)
    if not images:
        raise ModelError(f"none of the images in {folder} could be decoded")
    return images


def make_calibration_set(
    sources: list[Path], out_dir: Path, *, count: int = 32, seed: int = 0
) -> list[Path]:
    """Write ``count`` varied views (crop, flip, brightness) of a few source photos.

    Only a handful of real photos ship with the packages available offline; varied crops of
    them give the quantizer a spread of scales and exposures. A real deployment calibrates on
    a few hundred frames from its own cameras instead.
    """
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [read_image(path) for path in sources]
    written = []
    for i in range(count):
        frame = frames[i % len(frames)]
        h, w = frame.shape[:2]
        scale = rng.uniform(0.5, 1.0)
        ch, cw = int(h * scale), int(w * scale)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        view = frame[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            view = view[:, ::-1]
        view = cv2.convertScaleAbs(view, alpha=float(rng.uniform(0.7, 1.3)), beta=0).astype(
            np.uint8, copy=False
        )  # CV_8U already: no copy, only the dtype made known to mypy
        path = out_dir / f"calib_{i:04d}.jpg"
        cv2.imwrite(str(path), view, [cv2.IMWRITE_JPEG_QUALITY, 92])
        written.append(path)
    return written
