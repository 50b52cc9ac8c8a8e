"""What every frame source shares: the frame, its counters, iteration, stop and pacing.

Sources themselves live by kind: files in :mod:`lensflow.edge.file_sources`, live streams and
USB cameras in :mod:`lensflow.edge.live_sources`; :func:`lensflow.edge.sources.open_source`
picks one for a camera's config.

A source that cannot be had (a missing folder, a video OpenCV cannot open, a stream that does
not answer) never raises: it logs one warning line naming the camera, the source and the
reason (:data:`FAILURE_REASONS`), counts the reason in :attr:`SourceStats.failures` and tries
again after a delay from its :class:`~lensflow.shared.retry.Backoff`. One that has failed and
given no frame for ``open_timeout_s`` is :attr:`BaseSource.dead`: ``lensflow edge --once``
stops waiting for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from lensflow.shared.classifiers.base import Image
from lensflow.shared.errors import LensflowError
from lensflow.shared.retry import Backoff

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting consumer checks the stop event
JOIN_S = 0.5  # how long the consumer waits for a reader thread still inside OpenCV
OPEN_TIMEOUT_S = 10.0  # default: failing this long without a frame makes a source dead

FAILURE_REASONS = {
    "missing": "nothing at the path, or no such device",
    "unreadable": "there, but not readable as this kind of source (permissions, a file "
    "where a folder is expected)",
    "empty": "a folder without image files",
    "undecodable": "an image or video that does not decode",
    "too_large": "an image whose header declares more than the source's max pixels",
    "unreachable": "a stream that cannot be opened",
    "lost": "a stream or device that stopped giving frames",
    "error": "an unexpected exception while reading",
}
"""Why a source or one of its frames failed: the ``reason`` label of the failure counter."""


class SourceError(LensflowError):
    """A video cannot be written (sample videos); sources report failures instead of raising."""


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
    frames_skipped_too_large: int = 0  # image files declaring too many pixels (not decoded)
    reconnects: int = 0  # live sources: connection attempts after a failure
    errors: int = 0  # failed opens, lost connections, OpenCV exceptions
    failures: dict[str, int] = field(default_factory=dict)  # by reason (FAILURE_REASONS)
    last_failure: str = ""  # the reason of the latest failure


class FrameSource(Protocol):
    """What the camera loop needs from a source."""

    camera: str
    target: str
    stats: SourceStats

    @property
    def dead(self) -> bool:
        """Whether it failed and gave no frame for its open timeout (``--once`` gives up)."""
        ...

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
    """Iteration, stop/close, frame numbering and failure reports shared by every source."""

    def __init__(
        self,
        *,
        camera: str,
        fps: float,
        stop: threading.Event | None,
        backoff: Backoff | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"camera {camera}: fps must be > 0, but got {fps}")
        if open_timeout_s <= 0:
            raise ValueError(f"camera {camera}: open_timeout_s must be > 0, got {open_timeout_s}")
        self.camera, self.fps, self.stats = camera, fps, SourceStats()
        self.backoff = backoff or Backoff()
        self.open_timeout_s = open_timeout_s
        self.target = ""  # what is read, for logs (no secrets)
        self._stop = stop if stop is not None else threading.Event()
        self._frames: Generator[Frame, None, None] | None = None
        self._owner: threading.Thread | None = None
        self._index = 0
        self._quiet_since = time.monotonic()  # no frame since then
        self._failing = False  # a failure since the last frame

    def __iter__(self) -> Iterator[Frame]:
        """The frames; iterating again continues where the last iteration stopped."""
        if self._frames is None:
            self._owner, self._frames = threading.current_thread(), self._generate()
            self._quiet_since = time.monotonic()
        return self._frames

    @property
    def dead(self) -> bool:
        """Whether it failed and gave no frame for ``open_timeout_s`` (it is still retried)."""
        return self._failing and time.monotonic() - self._quiet_since >= self.open_timeout_s

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
        self._quiet_since, self._failing = time.monotonic(), False
        return frame

    def _count(self, reason: str) -> None:
        """Count a failure by reason."""
        failures = self.stats.failures
        failures[reason] = failures.get(reason, 0) + 1
        self.stats.last_failure = reason

    def _skip(self, reason: str, detail: str) -> None:
        """One frame (an image file) is skipped; the source goes on."""
        self._count(reason)
        logger.warning("camera %s: source %s: %s: %s", self.camera, self.target, reason, detail)

    def _fail(self, reason: str, detail: str, *, said: str = "") -> float:
        """The source cannot give frames now: count, log one line, return the retry delay.

        Args:
            reason: One of :data:`FAILURE_REASONS`.
            detail: What was found, for the log line.
            said: What OpenCV/FFmpeg wrote about it (see :mod:`lensflow.edge.native_stderr`).
        """
        self._count(reason)
        self.stats.errors += 1
        self._failing = True
        delay = self.backoff.next_delay()
        logger.warning(
            "camera %s: source %s: %s: %s%s; retry %d in %.1f s",
            *(self.camera, self.target, reason, detail, f" ({said})" if said else ""),
            *(self.backoff.attempt, delay),
        )
        return delay

    def _recovered(self) -> None:
        """The source works again after failures: say so once and start the backoff over."""
        if self.backoff.attempt:
            logger.info("camera %s: source %s: available again", self.camera, self.target)
        self.backoff.reset()

    def _generate(self) -> Generator[Frame, None, None]:
        raise NotImplementedError
