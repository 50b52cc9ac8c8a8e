"""Regenerate docs/screenshots/*.png: the review app offscreen on a served, seeded API.

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [--out docs/screenshots]``.
The API is ``lensflow cloud api`` on a temporary SQLite database holding real crops of the
sample photos (:mod:`lensflow.bench.review_data`), each with its real embedding, so the
inspector's similar crops come from the API's image search; a few are relabelled first so the
views show human labels.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QWidget

from desktop.client import ApiClient
from desktop.main_window import MainWindow
from desktop.settings import SettingsStore
from lensflow.bench.review_data import ReviewApi

ROOT = Path(__file__).resolve().parent.parent


def wait(app: QApplication, done: Callable[[], bool], *, seconds: float = 20.0) -> None:
    """Run the event loop until ``done()`` (or the time is up)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let the last paints happen
        app.processEvents()
        time.sleep(0.01)


def save(widget: QWidget, path: Path) -> None:
    """Grab ``widget`` into ``path``."""
    if not widget.grab().save(str(path)):
        raise SystemExit(f"could not write {path}")
    print(f"wrote {path}")


def main() -> None:
    """Seed, serve, open the window, and save each view."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    folder = Path(tempfile.mkdtemp(prefix="lensflow-shots-"))
    with ReviewApi(folder / "api") as api:
        crops = api.seed(120)
        with ApiClient(api.base_url, key=api.tokens["operator"]) as client:
            client.relabel([c.crop_id for c in crops[-6:-3]], label="person")
            client.relabel([crops[-2].crop_id], label="van")
        settings = SettingsStore(QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat))
        window = MainWindow(settings, cache_dir=folder / "cache")
        window.resize(1440, 900)
        window.show()
        window.connect_to(api.base_url, api.tokens["operator"])
        wait(app, lambda: window.model.rowCount() > 0)
        window.select_row(1)
        wait(
            app,
            lambda: (
                window.inspector.detail is not None
                and window.thumbs.get(window.model.item(30).crop_id) is not None
                and bool(window.inspector.similar_hits())
                and all(
                    window.thumbs.get(hit.crop_id) is not None
                    for hit in window.inspector.similar_hits()[:6]
                )
            ),
        )
        if not window.inspector.similar_hits():
            raise SystemExit(f"no similar crops: {window.inspector.similar_status.text()}")
        save(window, args.out / "grid.png")
        window.show_view(1)
        window.select_row(4)
        wait(app, lambda: window.inspector.detail is not None)
        save(window, args.out / "table.png")
        window.show_view(0)
        window.filters.unreviewed.setChecked(True)
        window.filters.camera.setCurrentText("dock-1")
        window.filters.apply_now()
        wait(app, lambda: window.model.query.camera == "dock-1" and not window.model.loading)
        save(window, args.out / "filtered.png")
        dialog = window.ask_connection()
        dialog.url.setText(api.base_url)
        dialog.key.setText("lfk_wrong")
        dialog.try_connect()
        wait(app, lambda: "did not accept" in dialog.status.text())
        save(dialog, args.out / "connect.png")
        dialog.close()
        window.close()


if __name__ == "__main__":
    main()
