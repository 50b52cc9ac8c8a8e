"""Frame sources: folders of images, video files, network streams and USB cameras.

Each source iterates :class:`Frame` objects and has ``close()`` and ``stats``. Files are read
in the consumer's thread, on demand. Live sources (streams, USB) are read by a daemon thread
that reconnects with capped exponential backoff and hands over the freshest sampled frame, so
the consumer never blocks inside OpenCV: the stop event (``close()`` sets it) ends iteration
within ``POLL_S`` seconds, even while a connection attempt hangs.
"""

from __future__ import annotations

import threading
from typing import assert_never

from lensflow.edge.file_sources import FolderSource, VideoSource
from lensflow.edge.live_sources import StreamSource, UsbSource
from lensflow.edge.source_base import POLL_S, Frame, FrameSource, SourceError, SourceStats
from lensflow.shared.config import edge as cfg
from lensflow.shared.retry import Backoff

__all__ = [
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
