"""Live frame sources: network streams (RTSP/HTTP) and USB cameras.

A daemon thread owns the ``cv2.VideoCapture``, reconnects with capped exponential backoff
and hands the freshest sampled frame to the consumer, so the consumer never blocks inside
OpenCV and a stop takes effect within ``POLL_S`` seconds, even while an open hangs. Each
failed attempt is one warning line (camera, source, reason, what FFmpeg said, next retry).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Generator
from urllib.parse import urlsplit

import cv2
import numpy as np

from lensflow.edge.native_stderr import native_stderr
from lensflow.edge.source_base import (
    JOIN_S,
    OPEN_TIMEOUT_S,
    POLL_S,
    BaseSource,
    Frame,
    Sampler,
)
from lensflow.shared.classifiers.base import Image
from lensflow.shared.retry import Backoff

logger = logging.getLogger(__name__)


class _LiveSource(BaseSource):
    """A capture read by a daemon thread that reconnects with backoff until stopped."""

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _open_failure(self) -> tuple[str, str]:
        """The reason and detail of a failed open."""
        return "unreachable", "cannot open"

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
                with native_stderr.watch(
                    camera=self.camera, target=self.target, settle=True
                ) as watch:
                    capture = self._open_capture()
                    if not capture.isOpened():
                        watch.fail()
                if capture.isOpened():
                    failure = self._read_until_lost(capture, latest)
                else:
                    failure = (*self._open_failure(), watch.said)
            except Exception as err:  # the reader must outlive any failure, or the camera goes dark
                logger.debug(
                    "camera %s: reading %s failed", self.camera, self.target, exc_info=True
                )
                failure = ("error", f"{type(err).__name__}: {err}", "")
            finally:
                if capture is not None:
                    capture.release()
            if self._stop.is_set():
                return
            reason, detail, said = failure
            delay = self._fail(reason, detail, said=said)
            self.stats.reconnects += 1
            self._stop.wait(delay)

    def _read_until_lost(
        self, capture: cv2.VideoCapture, latest: queue.Queue[tuple[Image, float]]
    ) -> tuple[str, str, str]:
        """Read until the stream fails; its reason, detail and what FFmpeg said."""
        opened, sampler, frames = time.monotonic(), Sampler(self.fps), 0
        while not self._stop.is_set():
            with native_stderr.watch(camera=self.camera, target=self.target) as watch:
                ok, image = capture.read()
                if not ok or image is None:
                    watch.fail()
            if not ok or image is None:
                return "lost", f"no frame after {frames} frames", watch.said
            if frames == 0:
                if not self.backoff.attempt:  # after failures, _recovered says it
                    logger.info("camera %s: connected to %s", self.camera, self.target)
                self._recovered()
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
        return "lost", "stopped", ""


class StreamSource(_LiveSource):
    """An RTSP/HTTP(S) stream through FFmpeg, with open and read timeouts.

    Args:
        url: rtsp://, rtsps://, http:// or https:// URL (its password is kept out of logs).
        camera: Camera name, for frames and logs.
        fps: Target frames per second (wall clock); faster streams drop frames.
        open_timeout_s: One connection attempt gives up after this long; failing this long
            without a frame makes the source :attr:`dead`.
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
        open_timeout_s: float = OPEN_TIMEOUT_S,
        read_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(
            camera=camera, fps=fps, stop=stop, backoff=backoff, open_timeout_s=open_timeout_s
        )
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
        open_timeout_s: Failing this long without a frame makes the source :attr:`dead`.
    """

    def __init__(
        self,
        device: int,
        *,
        camera: str,
        fps: float,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
    ) -> None:
        super().__init__(
            camera=camera, fps=fps, stop=stop, backoff=backoff, open_timeout_s=open_timeout_s
        )
        self.device, self.target = device, f"/dev/video{device}"

    def _open_capture(self) -> cv2.VideoCapture:
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        return cv2.VideoCapture(self.device, api)

    def _open_failure(self) -> tuple[str, str]:
        if sys.platform.startswith("linux") and not os.path.exists(self.target):
            return "missing", "expected a camera device, got nothing there"
        return "unreadable", "cannot open the device (busy, or no read access)"
