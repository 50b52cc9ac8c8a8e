"""Sample videos made from the real photos that ship with the packages, and a video writer.

Used by demos, tests and benchmarks; the writer checks that what it wrote reads back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from lensflow.edge.sources import SourceError
from lensflow.shared.classifiers.base import Image
from lensflow.shared.images import read_image, sample_image_paths

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def write_video(frames: Sequence[Image], path: str | Path, *, fps: float) -> Path:
    """Write BGR frames to ``.mp4`` (mp4v) or ``.avi`` (MJPG) and check every frame reads back.

    Raises:
        ValueError: No frames, frames of different shapes, fps <= 0 or another suffix.
        SourceError: OpenCV cannot write the file, or it does not read back whole.
    """
    out = Path(path)
    codec = CODECS.get(out.suffix.lower())
    shapes = sorted({(f.shape, str(f.dtype)) for f in frames})
    if codec is None or fps <= 0 or len(shapes) != 1 or shapes[0][0][2:] != (3,):
        raise ValueError(
            f"write_video: expected frames of one HxWx3 shape, fps > 0 and a path ending "
            f"{sorted(CODECS)}, but got shapes {shapes}, fps={fps}, path {out.name}"
        )
    height, width = frames[0].shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise SourceError(f"{out}: OpenCV cannot write {codec} video of {width}x{height}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    capture, count = cv2.VideoCapture(str(out)), 0
    try:
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    if count != len(frames):
        raise SourceError(f"{out}: expected {len(frames)} frames to read back, got {count}")
    return out


def make_sample_video(
    out_path: str | Path,
    *,
    frames: int = 60,
    size: tuple[int, int] = (640, 480),
    fps: float = 10,
    photos: Sequence[Path] | None = None,
) -> Path:
    """A slow pan and zoom over real photos (by default bus.jpg, then zidane.jpg).

    Each photo gets an equal run of frames; the view zooms in by 30% while sliding from the
    photo's left edge to its right, so people and the bus move smoothly across the picture.

    Args:
        out_path: The ``.mp4`` or ``.avi`` to write.
        frames: Number of frames.
        size: Width and height.
        fps: Frame rate written in the file.
        photos: The photos, in order; the ones in the ultralytics wheel when None.

    Returns:
        The written path.
    """
    images = [read_image(path) for path in (photos or sample_image_paths())]
    runs = np.array_split(np.arange(frames), len(images))
    views = [
        _pan_zoom(photo, i / max(1, len(run) - 1), size)
        for photo, run in zip(images, runs, strict=True)
        for i in range(len(run))
    ]
    return write_video(views, out_path, fps=fps)


def _pan_zoom(photo: Image, progress: float, size: tuple[int, int]) -> Image:
    """The view at ``progress`` in [0, 1]: zoomed 1.0 -> 1.3, panned left to right."""
    width, height = size
    scale = min(photo.shape[1] / width, photo.shape[0] / height) / (1.0 + 0.3 * progress)
    x = (photo.shape[1] - width * scale) * progress
    y = (photo.shape[0] - height * scale) * 0.5
    view_to_photo = np.array([[scale, 0.0, x], [0.0, scale, y]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(photo, view_to_photo, size, flags=flags).astype(np.uint8)
