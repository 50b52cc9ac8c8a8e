"""Crop images off the UI thread: a disk cache by content hash and an in-memory thumbnail LRU.

A crop's JPEG never changes (its id and sha256 are fixed), so the disk cache is keyed by the
JPEG's sha256 and never revalidated. :class:`ThumbnailLoader` reads the cache (or fetches from
the API and fills it) and decodes and scales on pool threads; the UI thread only turns the
finished :class:`~PySide6.QtGui.QImage` into a pixmap. The newest request runs first, so the
rows on screen load before the ones scrolled past.

Bytes from the API (or the cache) are not trusted: every decode passes the image-header gate
(:func:`~lensflow.shared.images.check_image_header`) first, so a small file declaring a huge
canvas (a decompression bomb) is refused before any decoder allocates it, and its thumbnail
is a placeholder saying why.
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
from PySide6.QtCore import QObject, QRect, QSize, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap

from lensflow.desktop.errors import ApiError
from lensflow.desktop.workers import Runner, Task
from lensflow.shared.errors import ImageError, LensflowError
from lensflow.shared.images import DEFAULT_MAX_PIXELS, check_image_header, decode_image, image_size

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
MAX_PIXELS = DEFAULT_MAX_PIXELS
"""The most pixels a crop image may declare (edge crops are at most 4096 px a side)."""


class ImageRefusedError(LensflowError):
    """Image bytes that are not decoded: too many pixels declared, or not a readable image.

    Attributes:
        short: A few words for a placeholder (``20000x20000: too large``).

    """

    def __init__(self, message: str, *, short: str) -> None:
        """Say why, at length and in a few words."""
        super().__init__(message)
        self.short = short


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


def decode(
    data: bytes,
    *,
    size: QSize | None = None,
    what: str = "crop image",
    max_pixels: int = MAX_PIXELS,
) -> QImage:
    """Decode image bytes (scaled down to fit ``size``) after the header gate; off the UI thread.

    The header is checked first: nothing is decoded whose header does not declare a readable
    size within ``max_pixels``. OpenCV decodes and scales (it releases the GIL, so pool threads
    decoding thumbnails do not hold up the UI thread, as Qt's decoder called through PySide
    does); the QImage owns a copy of the pixels.

    Args:
        data: The encoded image (JPEG from the API; PNG, WebP and BMP are read too).
        size: Scale down to fit this box; None keeps the image's size.
        what: Names the image in errors.
        max_pixels: The most pixels the header may declare.

    Raises:
        ImageRefusedError: The header declares too many pixels (refused before decoding), no
            readable size, or the bytes do not decode.

    """
    try:
        check_image_header(data, what=what, max_pixels=max_pixels)
    except ImageError as err:
        declared = image_size(data)
        short = "not an image"
        if declared is not None and declared[0] * declared[1] > max_pixels:
            short = f"{declared[0]}x{declared[1]}: too large"
        raise ImageRefusedError(f"{err} (refused before decoding)", short=short) from err
    try:
        pixels = decode_image(data, what=what, max_pixels=max_pixels)
    except ImageError as err:
        raise ImageRefusedError(str(err), short="does not decode") from err
    height, width = pixels.shape[:2]
    if size is not None and (width > size.width() or height > size.height()):
        scale = min(size.width() / width, size.height() / height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, target, interpolation=cv2.INTER_AREA).astype(
            np.uint8, copy=False
        )
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
        self.refused: dict[str, str] = {}  # crop id -> why its image is not shown
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
            return decode(cached, size=self.size, what=f"crop {crop_id}")
        data = load_jpeg(crop_id, sha256, cache=self.cache, fetch=fetch)
        return decode(data, size=self.size, what=f"crop {crop_id}")

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
        if isinstance(err, ImageRefusedError):  # its bytes never change: show why, for good
            self.refused[crop_id] = str(err)
            self._memory[crop_id] = placeholder(self.size, title="Not shown", reason=err.short)
            self.loaded.emit(crop_id)
        self.failed.emit(crop_id, str(err))


def placeholder(size: QSize, *, title: str, reason: str) -> QPixmap:
    """A grey tile with a title and a short reason, in place of an image (UI thread)."""
    pixmap = QPixmap(size)
    pixmap.fill(QColor("#d8d8d8"))
    painter = QPainter(pixmap)
    try:
        painter.setPen(QColor("#505050"))
        font = QFont(painter.font())
        font.setBold(True)
        painter.setFont(font)
        top = QRect(4, 4, size.width() - 8, size.height() // 2 - 4)
        painter.drawText(top, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, title)
        font.setBold(False)
        font.setPointSizeF(max(font.pointSizeF() - 1.5, 7.0))
        painter.setFont(font)
        bottom = QRect(4, size.height() // 2 + 2, size.width() - 8, size.height() // 2 - 6)
        flags = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
        painter.drawText(bottom, int(flags) | int(Qt.TextFlag.TextWordWrap), reason)
    finally:
        painter.end()
    return pixmap
