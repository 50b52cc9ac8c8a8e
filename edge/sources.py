"""Frame sources: folders of images, video files, network streams and USB cameras.

Each source iterates :class:`Frame` objects and has ``close()`` and ``stats``. Files are read
in the consumer's thread, on demand. Live sources (streams, USB) are read by a daemon thread
that reconnects with capped exponential backoff and hands over the freshest sampled frame, so
the consumer never blocks inside OpenCV: the stop event (``close()`` sets it) ends iteration
within ``POLL_S`` seconds, even while a connection attempt hangs.

No source raises when its folder, file, stream or device cannot be had: it logs one warning
line (camera, source, reason), counts the reason (:data:`FAILURE_REASONS`) and tries again
with backoff; after ``open_timeout_s`` of failing without a frame it is ``dead``.
"""

from __future__ import annotations

import threading
from typing import assert_never

from lensflow.edge.file_sources import FolderSource, VideoSource
from lensflow.edge.live_sources import StreamSource, UsbSource
from lensflow.edge.source_base import (
    FAILURE_REASONS,
    POLL_S,
    Frame,
    FrameSource,
    SourceError,
    SourceStats,
)
from lensflow.shared.config import edge as cfg
from lensflow.shared.retry import Backoff

__all__ = [
    "FAILURE_REASONS",
    "POLL_S",
    "Backoff",
    "FolderSource",
    "Frame",
    "FrameSource",
    "SourceError",
    "SourceStats",
    "StreamSource",
    "UsbSource",
    "VideoSource",
    "open_source",
]


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
    timeout = config.open_timeout_s
    if isinstance(config, cfg.FolderSource):
        return FolderSource(
            config.path,
            camera=camera,
            fps=fps,
            loop=config.loop,
            realtime=realtime,
            stop=stop,
            open_timeout_s=timeout,
            max_pixels=config.max_image_pixels,
        )
    if isinstance(config, cfg.VideoSource):
        return VideoSource(
            config.path,
            camera=camera,
            fps=fps,
            loop=config.loop,
            realtime=realtime,
            stop=stop,
            open_timeout_s=timeout,
        )
    if isinstance(config, cfg.StreamSource):
        return StreamSource(config.url, camera=camera, fps=fps, open_timeout_s=timeout, stop=stop)
    if isinstance(config, cfg.UsbSource):
        return UsbSource(config.device, camera=camera, fps=fps, stop=stop, open_timeout_s=timeout)
    assert_never(config)
