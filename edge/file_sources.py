"""File sources: a folder of images and a video file, read in the consumer's thread on demand.

A folder or video that is not there yet (or not readable yet) is not an error that ends the
camera: it is reported (one warning line, a counted reason) and looked for again with backoff,
so one that appears later is picked up.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Generator
from pathlib import Path

import cv2
import numpy as np

from lensflow.edge.native_stderr import native_stderr
from lensflow.edge.source_base import OPEN_TIMEOUT_S, BaseSource, Frame, Pacer, Sampler
from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import ImageError
from lensflow.shared.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    decode_image,
    image_size,
)
from lensflow.shared.retry import Backoff

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
        backoff: Backoff | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
    ) -> None:
        super().__init__(
            camera=camera, fps=fps, stop=stop, backoff=backoff, open_timeout_s=open_timeout_s
        )
        self.path, self.loop, self.realtime = Path(path), loop, realtime
        self.target = str(self.path)


class FolderSource(_FileSource):
    """Images of a folder in name order, each one a frame; undecodable ones are skipped.

    The folder is listed again at each pass, so images added while looping are picked up. A
    folder that is missing, unreadable or holds no image file is looked for again with backoff.
    Every image goes through :func:`~lensflow.shared.images.check_image_header` before it is
    decoded: one declaring more than ``max_pixels`` (a decompression bomb) is skipped as
    ``too_large``.

    Args:
        path: Folder of images (jpg, jpeg, png, bmp, webp).
        camera: Camera name, for frames and logs.
        fps: Pace of delivery when ``realtime``.
        loop: Start again after the last image.
        realtime: Deliver at ``fps``; otherwise as fast as consumed.
        stop: Ends iteration when set.
        backoff: Delays between looks for a missing folder (default: 0.5 s doubling to 30 s).
        open_timeout_s: Failing this long without a frame makes the source :attr:`dead`.
        max_pixels: The most pixels an image may declare in its header.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        camera: str,
        fps: float,
        loop: bool = False,
        realtime: bool = False,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(
            path,
            camera=camera,
            fps=fps,
            loop=loop,
            realtime=realtime,
            stop=stop,
            backoff=backoff,
            open_timeout_s=open_timeout_s,
        )
        if max_pixels <= 0:
            raise ValueError(f"camera {camera}: max_pixels must be > 0, but got {max_pixels}")
        self.max_pixels = max_pixels

    def _generate(self) -> Generator[Frame, None, None]:
        pacer = Pacer(self._stop)
        while not self._stop.is_set():
            paths = self._list()
            if paths is None:
                continue
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

    def _list(self) -> list[Path] | None:
        """The image files in name order; None after a failure was reported and waited out."""
        try:
            paths = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except FileNotFoundError:
            reason, detail = "missing", "expected a folder, got nothing there"
        except NotADirectoryError:
            reason, detail = "unreadable", "expected a folder, got a file"
        except OSError as err:
            reason, detail = "unreadable", f"cannot list the folder: {err.strerror or err}"
        else:
            if paths:
                self._recovered()
                return paths
            reason, detail = "empty", "expected image files (jpg, png, bmp, webp), got none"
        self._stop.wait(self._fail(reason, detail))
        return None

    def _decode(self, path: Path) -> Image | None:
        """The image, or None when it is skipped (reported and counted)."""
        try:
            data = path.read_bytes()
        except OSError as err:  # removed or unreadable since the listing
            self._skip("unreadable", f"{path.name}: {err.strerror or err}")
            return None
        try:  # decode_image passes the header gate first: a bomb is never decoded
            return decode_image(data, what=path.name, max_pixels=self.max_pixels)
        except ImageError as err:
            if _declares_more(data, self.max_pixels):
                self.stats.frames_skipped_too_large += 1
                self._skip("too_large", f"skipped {err}")
            else:
                self.stats.frames_skipped_undecodable += 1
                self._skip("undecodable", f"skipped {err}")
            return None


def _declares_more(data: bytes, max_pixels: int) -> bool:
    """Whether the header reads and declares more than ``max_pixels`` (a bomb, not garbage)."""
    size = image_size(data)
    return size is not None and size[0] * size[1] > max_pixels


class VideoSource(_FileSource):
    """A video file, sampled to ``fps`` by media time (``CAP_PROP_POS_MSEC``), not wall clock.

    A file that is missing or that OpenCV cannot open (yet: an MP4 being written has no index
    until the end) is looked for again with backoff; one that opens but gives no frame is
    reported ``undecodable`` and ends the source.

    Args:
        path: Video file readable by OpenCV.
        camera: Camera name, for frames and logs.
        fps: Target frames per second of media time; faster files drop frames.
        loop: Start again at the end (media time keeps counting).
        realtime: Deliver each frame when its media time is due; otherwise as fast as consumed.
        stop: Ends iteration when set.
        backoff: Delays between looks for a missing file (default: 0.5 s doubling to 30 s).
        open_timeout_s: Failing this long without a frame makes the source :attr:`dead`.
    """

    def _generate(self) -> Generator[Frame, None, None]:
        sampler, pacer = Sampler(self.fps), Pacer(self._stop)
        offset: float | None = 0.0  # media seconds of the passes already played
        while offset is not None and not self._stop.is_set():
            capture = self._open()
            if capture is None:
                continue
            try:
                end = yield from self._play(capture, offset, sampler, pacer)
            finally:
                capture.release()
            offset = end if self.loop else None

    def _open(self) -> cv2.VideoCapture | None:
        """The opened capture; None after a failure was reported and waited out."""
        said = ""
        if not self.path.exists():
            reason, detail = "missing", "expected a video file, got nothing there"
        elif self.path.is_dir():
            reason, detail = "unreadable", "expected a video file, got a folder"
        elif not os.access(self.path, os.R_OK):
            reason, detail = "unreadable", "expected a video file, got one without read access"
        else:
            with native_stderr.watch(camera=self.camera, target=self.target, settle=True) as watch:
                capture = cv2.VideoCapture(str(self.path))
                if capture.isOpened():
                    self._recovered()
                    return capture
                capture.release()
                watch.fail()
            reason, detail = (
                "undecodable",
                "expected a video OpenCV reads, got a file it cannot open",
            )
            said = watch.said
        self._stop.wait(self._fail(reason, detail, said=said))
        return None

    def _play(
        self, capture: cv2.VideoCapture, offset: float, sampler: Sampler, pacer: Pacer
    ) -> Generator[Frame, None, float | None]:
        """One pass; returns where the next starts (None: stopped, or nothing decoded)."""
        native = capture.get(cv2.CAP_PROP_FPS)
        step = 1.0 / native if native > 0 else 1.0 / self.fps
        t = offset - step
        while not self._stop.is_set():
            with native_stderr.watch(camera=self.camera, target=self.target) as watch:
                ok, image = capture.read()
                if t < offset and (not ok or image is None):
                    watch.fail()
            if not ok or image is None:
                if t >= offset:
                    return t + step
                self._count("undecodable")
                said = f" ({watch.said})" if watch.said else ""
                logger.warning(
                    "camera %s: source %s: undecodable: opened, but no frame decodes%s",
                    self.camera,
                    self.target,
                    said,
                )
                return None
            pos = offset + capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            t = pos if pos > t else t + step  # a container without timestamps: count frames
            if not sampler.take(t):
                self.stats.frames_dropped += 1
            elif self.realtime and pacer.wait(t):
                return None
            else:
                yield self._emit(image.astype(np.uint8, copy=False), round(t * 1000.0, 3))
        return None
