"""Crop images off the UI thread: a disk cache by content hash and an in-memory thumbnail LRU.

A crop's JPEG never changes (its id and sha256 are fixed), so the disk cache is keyed by the
JPEG's sha256 and never revalidated. :class:`ThumbnailLoader` reads the cache (or fetches from
the API and fills it) and decodes and scales on pool threads; the UI thread only turns the
finished :class:`~PySide6.QtGui.QImage` into a pixmap. The newest request runs first, so the
rows on screen load before the ones scrolled past.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, QSize, QStandardPaths, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap

from lensflow.desktop.errors import ApiError
from lensflow.desktop.workers import Runner, Task

logger = logging.getLogger(__name__)

THUMB_SIZE = QSize(128, 128)
MEMORY_ITEMS = 2000
STORE_BUDGET_S = 0.006
"""UI-thread time spent at once turning arrived thumbnails into pixmaps; the rest waits for
the next turn of the event loop, so a burst of arrivals does not freeze scrolling."""
MAX_QUEUED = 96
"""Thumbnail loads waiting at most (about two screens of the grid): when the view scrolls
fast, the loads of rows scrolled past are dropped (the view asks again if they come back)."""
"""Thumbnails kept as pixmaps (128 px: about 64 KiB each)."""
Fetch = Callable[[str], bytes]
"""Fetch a crop's JPEG by crop id (``ApiClient.crop_jpeg``)."""


def default_cache_dir() -> Path:
    """The user's cache folder for crop JPEGs."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    return Path(base or tempfile.gettempdir()) / "lensflow-review" / "crops"


class DiskCache:
    """Crop JPEGs in a folder, by sha256 (``ab/abcdef....jpg``); writes are atomic."""

    def __init__(self, root: Path) -> None:
        """Keep files under ``root`` (created on the first write)."""
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the JPEG with this hash is (or would be)."""
        name = "".join(c for c in sha256.lower() if c in "0123456789abcdef") or "unknown"
        return self.root / name[:2] / f"{name}.jpg"

    def get(self, sha256: str) -> bytes | None:
        """The cached bytes, or None."""
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, sha256: str, data: bytes) -> None:
        """Cache ``data`` (a failure to write is logged: the cache is an optimisation)."""
        path = self.path(sha256)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(path)
        except OSError as err:
            logger.warning("cannot cache crop %s in %s: %s", sha256[:12], self.root, err)


def load_jpeg(crop_id: str, sha256: str, *, cache: DiskCache, fetch: Fetch) -> bytes:
    """A crop's JPEG from the disk cache, else fetched and cached (call off the UI thread)."""
    data = cache.get(sha256)
    if data is None:
        data = fetch(crop_id)
        cache.put(sha256, data)
    return data


def decode(data: bytes, *, size: QSize | None = None) -> QImage:
    """Decode JPEG bytes (scaled down to fit ``size``); safe off the UI thread.

    OpenCV decodes and scales (it releases the GIL, so pool threads decoding thumbnails do
    not hold up the UI thread, as Qt's decoder called through PySide does); the QImage owns a
    copy of the pixels.

    Raises:
        ValueError: If the bytes are not an image OpenCV can read.

    """
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ValueError(f"expected JPEG bytes, got {len(data)} bytes OpenCV cannot decode")
    height, width = pixels.shape[:2]
    if size is not None and (width > size.width() or height > size.height()):
        scale = min(size.width() / width, size.height() / height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, target, interpolation=cv2.INTER_AREA)
        height, width = pixels.shape[:2]
    pixels = np.ascontiguousarray(pixels)
    image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_BGR888)
    return image.copy()  # detach from the numpy buffer


class ThumbnailLoader(QObject):
    """Thumbnails by crop id: from memory at once, else loaded on a pool and announced.

    Signals:
        loaded(str): A crop's thumbnail is now in memory (get it with :meth:`get`).
        failed(str, str): A crop's image could not be had: its id and why.

    """

    loaded = Signal(str)
    failed = Signal(str, str)

    def __init__(
        self,
        fetch: Fetch | None,
        *,
        cache: DiskCache,
        size: QSize = THUMB_SIZE,
        threads: int = 4,
        parent: QObject | None = None,
    ) -> None:
        """Load thumbnails with ``fetch`` through ``cache``.

        Args:
            fetch: Fetches a crop's JPEG by id; None until connected (cache only).
            cache: The disk cache.
            size: Thumbnail size.
            threads: Downloads at once.
            parent: The Qt parent.

        """
        super().__init__(parent)
        self.fetch = fetch
        self.cache = cache
        self.size = size
        self.runner = Runner(threads=threads, parent=self)
        self._memory: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: dict[str, Task] = {}
        self._failed: set[str] = set()
        self._order = 0
        self._arrived: deque[tuple[str, QImage]] = deque()
        self._store_timer = QTimer(self)
        self._store_timer.setSingleShot(True)
        self._store_timer.setInterval(0)
        self._store_timer.timeout.connect(self._store_some)

    def get(self, crop_id: str) -> QPixmap | None:
        """The thumbnail if it is in memory (no loading)."""
        pixmap = self._memory.get(crop_id)
        if pixmap is not None:
            self._memory.move_to_end(crop_id)
        return pixmap

    def request(self, crop_id: str, sha256: str) -> QPixmap | None:
        """The thumbnail if in memory; else start loading it (once) and return None."""
        pixmap = self.get(crop_id)
        if pixmap is not None or crop_id in self._pending or crop_id in self._failed:
            return pixmap
        self._order += 1  # the newest request first: what is on screen now
        self._pending[crop_id] = self.runner.submit(
            lambda: self._load(crop_id, sha256),
            on_done=lambda image: self._store(crop_id, image),
            on_error=lambda err: self._fail(crop_id, err),
            name=f"thumbnail {crop_id}",
            priority=self._order,
        )
        if len(self._pending) > MAX_QUEUED:
            self._drop_oldest(len(self._pending) - MAX_QUEUED)
        return None

    def _drop_oldest(self, count: int) -> None:
        """Take up to ``count`` of the oldest queued loads off the queue (not running ones)."""
        dropped: list[str] = []
        for crop_id, task in self._pending.items():
            if len(dropped) == count:
                break
            if self.runner.cancel(task):
                dropped.append(crop_id)
        for crop_id in dropped:
            del self._pending[crop_id]

    def cancel_pending(self) -> None:
        """Drop every queued load (the list was replaced)."""
        for task in self._pending.values():
            self.runner.cancel(task)
        self._pending.clear()

    def reset(self, fetch: Fetch | None) -> None:
        """Use another fetch function (a new connection) and forget earlier failures."""
        self.cancel_pending()
        self.fetch = fetch
        self._failed.clear()

    def _load(self, crop_id: str, sha256: str) -> QImage:
        """Pool thread: bytes from the cache or the API, decoded and scaled."""
        fetch = self.fetch
        if fetch is None:
            cached = self.cache.get(sha256)
            if cached is None:
                raise ApiError("Not connected: the crop image is not cached.")
            return decode(cached, size=self.size)
        return decode(load_jpeg(crop_id, sha256, cache=self.cache, fetch=fetch), size=self.size)

    def _store(self, crop_id: str, image: QImage) -> None:
        """A decoded thumbnail arrived: queue it (many arrive at once while scrolling)."""
        self._arrived.append((crop_id, image))
        if not self._store_timer.isActive():
            self._store_timer.start()

    def _store_some(self) -> None:
        """Make pixmaps of arrived thumbnails for at most :data:`STORE_BUDGET_S`, then yield."""
        deadline = time.perf_counter() + STORE_BUDGET_S
        while self._arrived and time.perf_counter() < deadline:
            crop_id, image = self._arrived.popleft()
            self._pending.pop(crop_id, None)
            self._memory[crop_id] = QPixmap.fromImage(image)
            while len(self._memory) > MEMORY_ITEMS:
                self._memory.popitem(last=False)
            self.loaded.emit(crop_id)
        if self._arrived:
            self._store_timer.start()

    def _fail(self, crop_id: str, err: Exception) -> None:
        self._pending.pop(crop_id, None)
        self._failed.add(crop_id)
        logger.warning("thumbnail of crop %s failed: %s", crop_id, err)
        self.failed.emit(crop_id, str(err))
