"""Live frame sources: network streams (RTSP/HTTP) and USB cameras.

A daemon thread owns the ``cv2.VideoCapture``, reconnects with capped exponential backoff
and hands the freshest sampled frame to the consumer, so the consumer never blocks inside
OpenCV and a stop takes effect within ``POLL_S`` seconds, even while an open hangs.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Generator
from urllib.parse import urlsplit

import cv2
import numpy as np

from lensflow.edge.source_base import JOIN_S, POLL_S, BaseSource, Frame, Sampler
from lensflow.shared.classifiers.base import Image
from lensflow.shared.retry import Backoff

logger = logging.getLogger(__name__)


class _LiveSource(BaseSource):
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
        opened, sampler, frames = time.monotonic(), Sampler(self.fps), 0
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
