"""Helpers of the review app's tests: a served seeded API, a connected window, fresh crops."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from lensflow.desktop.main_window import MainWindow
from lensflow.desktop.settings import SettingsStore
from tests.support.review_api import ReviewApi
from tests.support.review_data import T0, CropEmbedder, SeededCrop

SEEDED = 60
_fresh = itertools.count(1)


@dataclass
class ReviewSetup:
    """The served API and what was seeded on it."""

    api: ReviewApi
    crops: list[SeededCrop]

    def fresh_camera(
        self, count: int, *, offset_days: int = 0, embedded: bool = True
    ) -> tuple[str, list[SeededCrop]]:
        """Seed ``count`` crops on a camera no other test uses; its name and the crops.

        With ``embedded`` off the crops get no embedding (as if stored before the node ran).
        """
        options = {} if embedded else {"embedder": None}
        n = next(_fresh)
        camera = f"fresh-{n:03d}"
        crops = self.api.seed(
            count,
            prefix=f"fresh{n:03d}",
            cameras=(camera,),
            start=T0 + timedelta(days=1 + offset_days, hours=n),
            seed=100 + n,
            **options,
        )
        return camera, crops


@contextlib.contextmanager
def served_review_api(folder: Path, *, embedder: CropEmbedder | None) -> Iterator[ReviewSetup]:
    """``lensflow cloud api`` on a SQLite database with :data:`SEEDED` real, embedded crops."""
    with ReviewApi(folder, embedder=embedder) as api:
        yield ReviewSetup(api=api, crops=api.seed(SEEDED))


def make_window(tmp_path: Path, **options: Any) -> MainWindow:
    """A window with its settings and crop cache in ``tmp_path``."""
    settings = SettingsStore(QSettings(str(tmp_path / "review.ini"), QSettings.Format.IniFormat))
    return MainWindow(settings, cache_dir=tmp_path / "cache", **options)


@contextlib.contextmanager
def open_window(
    setup: ReviewSetup, qtbot: Any, tmp_path: Path, *, role: str, **options: Any
) -> Iterator[MainWindow]:
    """A shown window connected with the ``role`` key, once its first page is in."""
    window = make_window(tmp_path, **options)
    qtbot.addWidget(window)
    window.show()
    window.connect_to(setup.api.base_url, setup.api.tokens[role])
    qtbot.waitUntil(lambda: window.model.rowCount() > 0, timeout=10_000)
    try:
        yield window
    finally:
        window.close()


def filter_camera(window: MainWindow, qtbot: Any, camera: str, *, rows: int) -> None:
    """Type ``camera`` into the camera filter and wait for its ``rows`` results."""
    window.filters.camera.setCurrentText(camera)
    window.filters.apply_now()
    qtbot.waitUntil(
        lambda: (
            window.model.query.camera == camera
            and not window.model.loading
            and window.model.rowCount() == rows
        ),
        timeout=10_000,
    )
