"""Frame sources: folders of images, video files, network streams and USB cameras.

Each source iterates :class:`Frame` objects and has ``close()`` and ``stats``. Files are read
in the consumer's thread, on demand. Live sources (streams, USB) are read by a daemon thread
that reconnects with capped exponential backoff and hands over the freshest sampled frame, so
the consumer never blocks inside OpenCV: the stop event (``close()`` sets it) ends iteration
within ``POLL_S`` seconds, even while a connection attempt hangs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, assert_never

import cv2
import numpy as np

from lensflow.shared.classifiers.base import Image
from lensflow.shared.config import edge as cfg
from lensflow.shared.errors import ImageError, LensflowError
from lensflow.shared.images import IMAGE_SUFFIXES, read_image

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting consumer checks the stop event
JOIN_S = 0.5  # how long the consumer waits for a reader thread still inside OpenCV


class SourceError(LensflowError):
    """A folder or video cannot be opened, or a video cannot be written."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame handed to the pipeline.

    Attributes:
        camera: Camera name.
        index: 0-based count of frames delivered by the source (across loops, reconnects).
        captured_at: When the frame was read (aware UTC).
        image: BGR uint8 pixels.
        source_pos: The file name (folders), or milliseconds: of media time for videos (still
            counting after a loop), since the connection opened for live sources.
    """

    camera: str
    index: int
    captured_at: datetime
    image: Image
    source_pos: str | float


@dataclass
class SourceStats:
    """Counters of one source."""

    frames_read: int = 0  # delivered to the consumer
    frames_dropped: int = 0  # decoded but dropped: faster than the target fps
    frames_skipped_undecodable: int = 0  # image files that do not decode
    reconnects: int = 0  # live sources: connection attempts after a failure
    errors: int = 0  # live sources: failed opens, lost connections, OpenCV exceptions


class FrameSource(Protocol):
    """What the camera loop needs from a source."""

    camera: str
    stats: SourceStats

    def __iter__(self) -> Iterator[Frame]:
        """The frames, until the source ends or its stop event is set."""
        ...

    def close(self) -> None:
        """Stop iterating and release the file, device or connection."""
        ...


@dataclass
class Backoff:
    """Capped exponential backoff with jitter, so cameras that fail together retry apart.

    Delay ``n`` is ``min(max_s, initial_s * factor**n)`` minus up to ``jitter`` of it.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)  # seeded in tests
    attempt: int = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt."""
        base = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """Start again from ``initial_s`` (a connection delivered a frame)."""
        self.attempt = 0


class _Sampler:
    """Keeps the frames whose time reaches the next due time, to approximate ``fps``."""

    def __init__(self, fps: float) -> None:
        self._period = 1.0 / fps
        self._next: float | None = None

    def take(self, t: float) -> bool:
        """Whether the frame at ``t`` seconds is kept (10% slack absorbs timestamp jitter)."""
        if self._next is not None and t < self._next - 0.1 * self._period:
            return False
        due = (t if self._next is None else self._next) + self._period
        self._next = due if due > t else t + self._period  # after a gap, no catch-up burst
        return True


class _Pacer:
    """Waits until media time ``t`` is due on the wall clock (``realtime`` files)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._origin: tuple[float, float] | None = None  # (media t, monotonic) of the first

    def wait(self, t: float) -> bool:
        """Wait for ``t``; True when the stop event was set."""
        now = time.monotonic()
        self._origin = self._origin or (t, now)
        delay = self._origin[1] + t - self._origin[0] - now
        return self._stop.wait(delay) if delay > 0 else self._stop.is_set()


class _BaseSource:
    """Iteration, stop/close and frame numbering shared by every source."""

    def __init__(self, *, camera: str, fps: float, stop: threading.Event | None) -> None:
        if fps <= 0:
            raise ValueError(f"camera {camera}: fps must be > 0, but got {fps}")
        self.camera, self.fps, self.stats = camera, fps, SourceStats()
        self._stop = stop if stop is not None else threading.Event()
        self._frames: Generator[Frame, None, None] | None = None
        self._owner: threading.Thread | None = None
        self._index = 0

    def __iter__(self) -> Iterator[Frame]:
        """The frames; iterating again continues where the last iteration stopped."""
        if self._frames is None:
            self._owner, self._frames = threading.current_thread(), self._generate()
        return self._frames

    def close(self) -> None:
        """Set the stop event; from the iterating thread, also release resources now.

        From another thread only the event is set: the iterating thread sees it at its next
        frame (files) or within ``POLL_S`` (live sources) and releases them itself.
        """
        self._stop.set()
        if self._frames is not None and self._owner is threading.current_thread():
            self._frames.close()

    def _emit(self, image: Image, pos: str | float) -> Frame:
        frame = Frame(self.camera, self._index, datetime.now(UTC), image, pos)
        self._index += 1
        self.stats.frames_read += 1
        return frame

    def _generate(self) -> Generator[Frame, None, None]:
        raise NotImplementedError


class _FileSource(_BaseSource):
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
        pacer = _Pacer(self._stop)
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
        sampler, pacer = _Sampler(self.fps), _Pacer(self._stop)
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
        self, capture: cv2.VideoCapture, offset: float, sampler: _Sampler, pacer: _Pacer
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


def open_source(
    config: cfg.Source, *, camera: str, fps: float, stop: threading.Event, realtime: bool
) -> FrameSource:
    """The source for a camera's ``source`` config; nothing is opened until iteration.

    Args:
        config: The camera's source section.
        camera: Camera name.
        fps: Target frames per second.
        stop: Ends iteration when set; the source's ``close()`` sets it.
        realtime: Pace files (folders, videos) to the wall clock; otherwise read them as fast
            as consumed. Live sources are always real time.
    """
    if isinstance(config, cfg.FolderSource | cfg.VideoSource):
        kind = FolderSource if isinstance(config, cfg.FolderSource) else VideoSource
        return kind(
            config.path, camera=camera, fps=fps, loop=config.loop, realtime=realtime, stop=stop
        )
    from lensflow.edge.live_sources import StreamSource, UsbSource  # live sources need threads

    if isinstance(config, cfg.StreamSource):
        timeout = config.open_timeout_s
        return StreamSource(config.url, camera=camera, fps=fps, open_timeout_s=timeout, stop=stop)
    if isinstance(config, cfg.UsbSource):
        return UsbSource(config.device, camera=camera, fps=fps, stop=stop)
    assert_never(config)
