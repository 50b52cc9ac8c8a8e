"""File sources: a folder of images and a video file, read in the consumer's thread on demand."""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from pathlib import Path

import cv2
import numpy as np

from lensflow.edge.source_base import BaseSource, Frame, Pacer, Sampler, SourceError
from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import ImageError
from lensflow.shared.images import IMAGE_SUFFIXES, read_image

logger = logging.getLogger(__name__)


class _FileSource(BaseSource):
    def __init__(
        self,
        path: str | Path,
        *,
        camera: str,
        fps: float,
        loop: bool = False,
        realtime: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(camera=camera, fps=fps, stop=stop)
        self.path, self.loop, self.realtime = Path(path), loop, realtime


class FolderSource(_FileSource):
    """Images of a folder in name order, each one a frame; undecodable ones are skipped.

    The folder is listed again at each pass, so images added while looping are picked up.

    Args:
        path: Folder of images (jpg, jpeg, png, bmp, webp).
        camera: Camera name, for frames and logs.
        fps: Pace of delivery when ``realtime``.
        loop: Start again after the last image.
        realtime: Deliver at ``fps``; otherwise as fast as consumed.
        stop: Ends iteration when set.

    Raises:
        SourceError: At iteration, when ``path`` is not a folder.
    """

    def _generate(self) -> Generator[Frame, None, None]:
        if not self.path.is_dir():
            got = "a file" if self.path.exists() else "nothing"
            raise SourceError(f"camera {self.camera}: expected a folder at {self.path}, got {got}")
        pacer = Pacer(self._stop)
        while not self._stop.is_set():
            paths = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            delivered = 0
            for path in paths:
                image = self._decode(path)
                if image is None:
                    continue
                if self._stop.is_set() or (self.realtime and pacer.wait(self._index / self.fps)):
                    return
                delivered += 1
                yield self._emit(image, path.name)
            if delivered == 0:
                logger.warning("camera %s: no decodable image in %s", self.camera, self.path)
            if not self.loop or delivered == 0:
                return

    def _decode(self, path: Path) -> Image | None:
        try:
            return read_image(path)
        except ImageError as err:
            self.stats.frames_skipped_undecodable += 1
            logger.warning("camera %s: skipped undecodable image %s: %s", self.camera, path, err)
            return None


class VideoSource(_FileSource):
    """A video file, sampled to ``fps`` by media time (``CAP_PROP_POS_MSEC``), not wall clock.

    Args:
        path: Video file readable by OpenCV.
        camera: Camera name, for frames and logs.
        fps: Target frames per second of media time; faster files drop frames.
        loop: Start again at the end (media time keeps counting).
        realtime: Deliver each frame when its media time is due; otherwise as fast as consumed.
        stop: Ends iteration when set.

    Raises:
        SourceError: At iteration, when OpenCV cannot open ``path``.
    """

    def _generate(self) -> Generator[Frame, None, None]:
        sampler, pacer = Sampler(self.fps), Pacer(self._stop)
        offset: float | None = 0.0  # media seconds of the passes already played
        while offset is not None and not self._stop.is_set():
            capture = cv2.VideoCapture(str(self.path))
            if not capture.isOpened():
                capture.release()
                got = "a file it cannot open" if self.path.exists() else "no file"
                raise SourceError(
                    f"camera {self.camera}: expected a video OpenCV reads at {self.path}, got {got}"
                )
            try:
                end = yield from self._play(capture, offset, sampler, pacer)
            finally:
                capture.release()
            offset = end if self.loop else None

    def _play(
        self, capture: cv2.VideoCapture, offset: float, sampler: Sampler, pacer: Pacer
    ) -> Generator[Frame, None, float | None]:
        """One pass; returns where the next starts (None: stopped, or nothing decoded)."""
        native = capture.get(cv2.CAP_PROP_FPS)
        step = 1.0 / native if native > 0 else 1.0 / self.fps
        t = offset - step
        while not self._stop.is_set():
            ok, image = capture.read()
            if not ok or image is None:
                return t + step if t >= offset else None
            pos = offset + capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            t = pos if pos > t else t + step  # a container without timestamps: count frames
            if not sampler.take(t):
                self.stats.frames_dropped += 1
            elif self.realtime and pacer.wait(t):
                return None
            else:
                yield self._emit(image.astype(np.uint8, copy=False), round(t * 1000.0, 3))
        return None
