"""Real image crops for the cloud benchmarks, cut from the sample photos."""

from __future__ import annotations

import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.images import read_image, sample_image_paths

CROP_SIZE = (160, 200)
"""Width and height of a crop: a person-sized detection."""

Box = tuple[int, int, int, int]


def crop_images(
    count: int, *, size: tuple[int, int] = CROP_SIZE, seed: int = 7
) -> list[tuple[Image, Box, tuple[int, int]]]:
    """``count`` crops of the sample photos at seeded random places (distinct in practice).

    Args:
        count: How many crops.
        size: Width and height of every crop.
        seed: Seed of the crop positions.

    Returns:
        ``(image, (x1, y1, x2, y2), (frame_width, frame_height))`` per crop; consecutive
        crops alternate between the photos.

    """
    photos = [read_image(path) for path in sample_image_paths()]
    width, height = size
    places = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        frame = photos[index % len(photos)]
        rows, cols = frame.shape[:2]
        x1, y1 = int(places.integers(cols - width)), int(places.integers(rows - height))
        image = frame[y1 : y1 + height, x1 : x1 + width]
        crops.append((image, (x1, y1, x1 + width, y1 + height), (cols, rows)))
    return crops
