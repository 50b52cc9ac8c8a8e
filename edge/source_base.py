"""What every frame source shares: the frame, its counters, iteration, stop and pacing.

Sources themselves live by kind: files in :mod:`lensflow.edge.file_sources`, live streams and
USB cameras in :mod:`lensflow.edge.live_sources`; :func:`lensflow.edge.sources.open_source`
picks one for a camera's config.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import LensflowError

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


class Sampler:
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


class Pacer:
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


class BaseSource:
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
