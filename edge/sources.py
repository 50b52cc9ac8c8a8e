"""Frame sources: folders of images, video files, network streams and USB cameras.

Each source iterates :class:`Frame` objects and has ``close()`` and ``stats``. Files are read
in the consumer's thread, on demand. Live sources (streams, USB) are read by a daemon thread
that reconnects with capped exponential backoff and hands over the freshest sampled frame, so
the consumer never blocks inside OpenCV: the stop event (``close()`` sets it) ends iteration
within ``POLL_S`` seconds, even while a connection attempt hangs.
"""

from __future__ import annotations

import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, assert_never
from urllib.parse import urlsplit

import cv2
import numpy as np

from shared.classifiers.base import Image
from shared.config import edge as cfg
from shared.errors import ImageError, LensflowError
from shared.images import IMAGE_SUFFIXES, read_image, sample_image_paths

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting consumer checks the stop event
JOIN_S = 0.5  # how long the consumer waits for a reader thread still inside OpenCV
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


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


class _LiveSource(_BaseSource):
    """A capture read by a daemon thread that reconnects with backoff until stopped."""

    def __init__(
        self, *, camera: str, fps: float, stop: threading.Event | None, backoff: Backoff | None
    ) -> None:
        super().__init__(camera=camera, fps=fps, stop=stop)
        self.backoff = backoff or Backoff()
        self.target = ""  # what is read, for logs (no secrets)

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _generate(self) -> Generator[Frame, None, None]:
        latest: queue.Queue[tuple[Image, float]] = queue.Queue(maxsize=1)
        name = f"source-{self.camera}"
        reader = threading.Thread(target=self._read, args=(latest,), name=name, daemon=True)
        reader.start()
        try:
            while not self._stop.is_set():
                try:
                    yield self._emit(*latest.get(timeout=POLL_S))
                except queue.Empty:
                    continue
        finally:
            self._stop.set()
            reader.join(JOIN_S)
            if reader.is_alive():
                logger.info("camera %s: reader still in OpenCV; ends at its timeout", self.camera)

    def _read(self, latest: queue.Queue[tuple[Image, float]]) -> None:
        while not self._stop.is_set():
            capture: cv2.VideoCapture | None = None
            try:
                capture = self._open_capture()
                if capture.isOpened():
                    self._read_until_lost(capture, latest)
                else:
                    self.stats.errors += 1
                    logger.warning("camera %s: cannot open %s", self.camera, self.target)
            except Exception:  # the reader must outlive any failure, or the camera goes dark
                self.stats.errors += 1
                logger.exception("camera %s: reading %s failed", self.camera, self.target)
            finally:
                if capture is not None:
                    capture.release()
            if self._stop.is_set():
                return
            self.stats.reconnects += 1
            delay = self.backoff.next_delay()
            logger.info(
                "camera %s: reconnect %d to %s in %.2f s",
                *(self.camera, self.stats.reconnects, self.target, delay),
            )
            self._stop.wait(delay)

    def _read_until_lost(
        self, capture: cv2.VideoCapture, latest: queue.Queue[tuple[Image, float]]
    ) -> None:
        opened, sampler, frames = time.monotonic(), _Sampler(self.fps), 0
        while not self._stop.is_set():
            ok, image = capture.read()
            if not ok or image is None:
                self.stats.errors += 1
                logger.warning(
                    "camera %s: %s lost after %d frames", self.camera, self.target, frames
                )
                return
            if frames == 0:
                self.backoff.reset()
                logger.info("camera %s: connected to %s", self.camera, self.target)
            frames += 1
            now = time.monotonic()
            if not sampler.take(now):
                self.stats.frames_dropped += 1
                continue
            try:  # a consumer slower than fps gets the freshest frame, not a backlog
                latest.get_nowait()
                self.stats.frames_dropped += 1
            except queue.Empty:
                pass  # nothing waiting: the consumer keeps up
            latest.put_nowait((image.astype(np.uint8, copy=False), round((now - opened) * 1000, 3)))


class StreamSource(_LiveSource):
    """An RTSP/HTTP(S) stream through FFmpeg, with open and read timeouts.

    Args:
        url: rtsp://, rtsps://, http:// or https:// URL (its password is kept out of logs).
        camera: Camera name, for frames and logs.
        fps: Target frames per second (wall clock); faster streams drop frames.
        open_timeout_s: One connection attempt gives up after this long.
        read_timeout_s: A stream silent this long is lost (default: ``open_timeout_s``).
        backoff: Delays between attempts (default: 0.5 s doubling to 30 s, with jitter).
        stop: Ends iteration when set.
    """

    def __init__(
        self,
        url: str,
        *,
        camera: str,
        fps: float,
        open_timeout_s: float = 10.0,
        read_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(camera=camera, fps=fps, stop=stop, backoff=backoff)
        self.url, self.open_ms = url, round(open_timeout_s * 1000)
        self.read_ms = round((read_timeout_s or open_timeout_s) * 1000)
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        self.target = parts._replace(netloc=host).geturl() if parts.password else url

    def _open_capture(self) -> cv2.VideoCapture:
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_ms]
        timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_ms]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, timeouts)


class UsbSource(_LiveSource):
    """A local camera by device index (V4L2 on Linux), reconnected like a stream.

    Args:
        device: Index, as in /dev/videoN.
        camera: Camera name, for frames and logs.
        fps: Target frames per second (wall clock); faster cameras drop frames.
        backoff: Delays between attempts (default: 0.5 s doubling to 30 s, with jitter).
        stop: Ends iteration when set.
    """

    def __init__(
        self,
        device: int,
        *,
        camera: str,
        fps: float,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(camera=camera, fps=fps, stop=stop, backoff=backoff)
        self.device, self.target = device, f"/dev/video{device}"

    def _open_capture(self) -> cv2.VideoCapture:
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        return cv2.VideoCapture(self.device, api)


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
    if isinstance(config, cfg.StreamSource):
        timeout = config.open_timeout_s
        return StreamSource(config.url, camera=camera, fps=fps, open_timeout_s=timeout, stop=stop)
    if isinstance(config, cfg.UsbSource):
        return UsbSource(config.device, camera=camera, fps=fps, stop=stop)
    assert_never(config)


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
    out_path: str | Path, *, frames: int = 60, size: tuple[int, int] = (640, 480), fps: float = 10
) -> Path:
    """A slow pan and zoom over the real sample photos (bus.jpg, then zidane.jpg).

    Each photo gets an equal run of frames; the view zooms in by 30% while sliding from the
    photo's left edge to its right, so people and the bus move smoothly across the picture.

    Args:
        out_path: The ``.mp4`` or ``.avi`` to write.
        frames: Number of frames.
        size: Width and height.
        fps: Frame rate written in the file.

    Returns:
        The written path.
    """
    photos = [read_image(path) for path in sample_image_paths()]
    runs = np.array_split(np.arange(frames), len(photos))
    views = [
        _pan_zoom(photo, i / max(1, len(run) - 1), size)
        for photo, run in zip(photos, runs, strict=True)
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
