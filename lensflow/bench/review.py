"""The review app on many results: time to the first page, and to scroll 1,000 rows.

A private PostgreSQL is bulk-loaded (:mod:`lensflow.bench.cloud_rows`: crops with one
classifier result each); every row is pointed at one of a few real crop JPEGs of the sample
photos, so thumbnails load as in production. ``lensflow cloud api`` serves it from a child
process and the real :class:`~lensflow.desktop.main_window.MainWindow` runs offscreen in this
process: the first-page time runs from the query to the first row in the model; the scroll
time from there until 1,000 rows are loaded while the grid is scrolled down like an
operator holding Page Down. A 10 ms heartbeat timer measures the longest stall of the UI
thread meanwhile (a freeze shows there).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2

from lensflow.bench import BenchError
from lensflow.bench.cloud_api import ApiServer, api_config
from lensflow.bench.cloud_rows import load_rows
from lensflow.bench.samples import crop_images
from lensflow.cloud.api import KeyStore
from lensflow.cloud.storage import CropStore, FolderCropStore, migrate
from lensflow.services.postgres import PostgresCluster

FIRST_PAGE_TARGET_S = 1.0
JPEGS = 64
"""Distinct real crop images the rows point at."""
_TIMEOUT_S = 120.0


@dataclass
class ReviewBench:
    """The figures (seconds) and the UI thread's longest stall (milliseconds)."""

    rows: int
    scroll_rows: int
    load_s: float = 0.0
    first_page_s: float = 0.0
    scroll_s: float = 0.0
    rows_loaded: int = 0
    thumbnails_loaded: int = 0
    max_stall_ms: float = 0.0
    first_page_target_s: float = FIRST_PAGE_TARGET_S

    def lines(self) -> list[str]:
        """The figures as text."""
        return [
            f"results seeded: {self.rows:,} (load {self.load_s:.1f} s)",
            f"time to first page: {self.first_page_s * 1000:.0f} ms "
            f"(target {self.first_page_target_s:.1f} s, ratio "
            f"{self.first_page_s / self.first_page_target_s:.2f})",
            f"time to scroll {self.scroll_rows:,} rows: {self.scroll_s:.2f} s "
            f"({self.rows_loaded:,} rows loaded, {self.thumbnails_loaded} thumbnails in memory)",
            f"longest UI-thread stall meanwhile: {self.max_stall_ms:.0f} ms",
        ]


def run_review_bench(*, rows: int, scroll_rows: int, folder: Path) -> ReviewBench:
    """Seed ``rows`` results, serve them, and time the app's first page and scroll.

    Raises:
        PostgresError: If the cluster cannot be started.
        BenchError: If the API cannot be started or the app does not load the rows in time.

    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    result = ReviewBench(rows=rows, scroll_rows=scroll_rows)
    with PostgresCluster() as cluster:
        url = cluster.url()
        migrate(url)
        started = time.perf_counter()
        with cluster.connect() as connection:
            load_rows(connection, rows=rows)
            hashes = _real_jpegs(FolderCropStore(folder / "api-crops"))
            connection.execute(
                "UPDATE crops SET jpeg_sha256 = (%s::text[])[1 + id %% %s]", (hashes, len(hashes))
            )
        result.load_s = time.perf_counter() - started
        token = _key(url)
        with ApiServer(api_config(folder, url=url), folder=folder) as server:
            _measure(result, base_url=server.base_url, token=token, cache=folder / "cache")
    return result


def _real_jpegs(store: CropStore) -> list[str]:
    """Store :data:`JPEGS` real crops; their sha256s."""
    hashes = []
    for image, _box, _frame in crop_images(JPEGS, seed=11):
        ok, buffer = cv2.imencode(".jpg", image)
        if not ok:
            raise BenchError("OpenCV could not encode a sample crop as JPEG")
        hashes.append(store.put(buffer.tobytes()))
    return hashes


def _key(url: str) -> str:
    from lensflow.cloud.storage import create_engine_for

    engine = create_engine_for(url)
    try:
        store = KeyStore(engine)
        store.ensure_table()
        return store.create(name="bench-review", role="viewer").token
    finally:
        engine.dispose()


def _measure(result: ReviewBench, *, base_url: str, token: str, cache: Path) -> None:
    """Run the window offscreen and time it."""
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from lensflow.desktop.client import ApiClient
    from lensflow.desktop.main_window import MainWindow
    from lensflow.desktop.settings import Connection, SettingsStore

    app = QApplication.instance() or QApplication([])
    settings = SettingsStore(QSettings(str(cache / "bench.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, cache_dir=cache, live_interval_ms=3_600_000)
    window.resize(1400, 860)
    window.show()
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    client = ApiClient(base_url, key=token)
    try:
        start = time.perf_counter()
        window.use_client(client, Connection(url=base_url, key=token), remember=False)
        _wait(app, lambda: window.model.rowCount() > 0, what="the first page")
        result.first_page_s = time.perf_counter() - start
        heartbeat.start()
        start = time.perf_counter()
        bar = window.grid.verticalScrollBar()

        def scrolled() -> bool:
            bar.setValue(bar.value() + bar.pageStep())  # Page Down, once per poll
            return window.model.rowCount() >= result.scroll_rows

        _wait(app, scrolled, what=f"{result.scroll_rows} rows")
        result.scroll_s = time.perf_counter() - start
        heartbeat.stop()
        result.rows_loaded = window.model.rowCount()
        result.thumbnails_loaded = len(window.thumbs._memory)
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        result.max_stall_ms = max(gaps, default=0.0) * 1000
        if window.last_error:
            raise BenchError(f"the app reported an error: {window.last_error}")
    finally:
        window.close()


def _wait(app: object, done: Callable[[], bool], *, what: str) -> None:
    """Run the event loop until ``done()``; BenchError after the timeout."""
    deadline = time.perf_counter() + _TIMEOUT_S
    while not done():
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.002)
        if time.perf_counter() > deadline:
            raise BenchError(f"the review app did not load {what} within {_TIMEOUT_S:g} s")
