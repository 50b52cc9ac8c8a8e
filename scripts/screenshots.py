"""Regenerate docs/screenshots/*.png: the review app offscreen on a served, seeded API.

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [--out docs/screenshots]``.
The API is ``lensflow cloud api`` on a temporary SQLite database holding what the demo's
pipeline really makes of its inputs (:mod:`tests.support.review_real`): the offline COCO
detector over the demo's photos and frames of its clip; the edge's crops; the demo DAG's shirt
colour (people), vehicle type (cars, trucks, buses) and embeddings, so the inspector's similar
crops come from the API's image search. The models are fetched and exported on first use, as
``lensflow demo`` does. A person
then reviews a few crops (:func:`review`) so the views show human labels and disagreements.
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

from lensflow.desktop.api_types import ResultQuery
from lensflow.desktop.client import ApiClient
from lensflow.desktop.main_window import MainWindow
from lensflow.desktop.settings import SettingsStore
from tests.support.review_api import ReviewApi
from tests.support.review_data import SeededCrop
from tests.support.review_real import EMBEDDING_NODE

ROOT = Path(__file__).resolve().parent.parent
COLOR_NODE = "tshirt_color_classification"
"""The demo DAG's shirt-colour node."""


def review(client: ApiClient, crops: list[SeededCrop]) -> list[str]:
    """Label a few crops as a person checking them would (what is true of the sample photos).

    * There is no elephant in darknet's horses: an ``elephant`` detection becomes ``horse``.
    * The confident "car" of the inputs is the pickup in darknet's dog photo (and the clip's
      views of it): COCO calls that a ``truck``.
    * The only person whose coat the shirt-colour node calls ``grey`` wears a beige one.
    * The four newest confident people are accepted as ``person``.

    Returns:
        The crops whose human label now differs from the edge or classifier.
    """
    wrong = {"elephant": "horse"}
    fixed = []
    for crop in crops:
        if crop.class_name in wrong:
            client.relabel([crop.crop_id], label=wrong[crop.class_name])
            fixed.append(crop.crop_id)
    cars = client.results(ResultQuery(class_name="car", min_score=0.8)).items
    pickups = [item.crop_id for item in cars]
    if pickups:
        client.relabel(pickups, label="truck")
    grey = client.results(ResultQuery(label="grey", node=COLOR_NODE)).items
    if grey:
        client.relabel([item.crop_id for item in grey], label="beige", node=COLOR_NODE)
    newest = client.results(ResultQuery(class_name="person", min_score=0.6), limit=4).items
    if newest:
        client.relabel([item.crop_id for item in newest], label="person")
    return fixed + pickups + [item.crop_id for item in grey]


def first_row(window: MainWindow, node: str, label: str, *, min_score: float = 0.7) -> int:
    """The first loaded row of a whole person (score, upright box) whose ``node`` is ``label``."""
    for row in range(window.model.rowCount()):
        item = window.model.item(row)
        x1, y1, x2, y2 = item.detection.box
        whole = item.detection.score >= min_score and (x2 - x1) >= 0.3 * (y2 - y1)
        if whole and item.label(node) == label:
            return row
    raise SystemExit(f"no loaded crop with {node} = {label} and score >= {min_score}")


def inspected(window: MainWindow) -> bool:
    """Whether the inspector has the crop's details, similar crops and their thumbnails."""
    hits = window.inspector.similar_hits()
    return (
        window.inspector.detail is not None
        and bool(hits)
        and all(window.thumbs.get(hit.crop_id) is not None for hit in hits[:6])
    )


def show_outputs(window: MainWindow) -> None:
    """Scroll the inspector's facts down to the classifier outputs and label history."""
    bar = window.inspector.info.verticalScrollBar()
    bar.setValue(bar.maximum())


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
    with ReviewApi(folder / "api", search_node=EMBEDDING_NODE) as api:
        crops = api.seed_detected()
        print(f"seeded {len(crops)} real crops")
        with ApiClient(api.base_url, key=api.tokens["operator"]) as client:
            differing = review(client, crops)
        settings = SettingsStore(QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat))
        window = MainWindow(settings, cache_dir=folder / "cache")
        window.resize(1600, 1000)
        window.show()
        window.connect_to(api.base_url, api.tokens["operator"])
        wait(app, lambda: window.model.rowCount() > 0)
        window.select_row(first_row(window, COLOR_NODE, "beige"))
        wait(
            app,
            lambda: (
                inspected(window) and window.thumbs.get(window.model.item(23).crop_id) is not None
            ),
        )
        if not window.inspector.similar_hits():
            raise SystemExit(f"no similar crops: {window.inspector.similar_status.text()}")
        show_outputs(window)
        save(window, args.out / "grid.png")
        window.show_view(1)
        window.table.scrollToTop()
        window.select_row(2)
        wait(app, lambda: inspected(window))
        save(window, args.out / "table.png")
        window.show_view(0)
        window.filters.corrected.setChecked(True)
        window.filters.apply_now()
        wait(app, lambda: bool(window.model.query.disagreement) and not window.model.loading)
        window.select_row(window.model.row_of(differing[0]) or 0)
        wait(app, lambda: inspected(window))
        show_outputs(window)
        save(window, args.out / "filtered.png")
        dialog = window.ask_connection()
        dialog.url.setText(api.base_url)
        dialog.key.setText("lfk_wrong")
        dialog.try_connect()
        wait(app, lambda: "did not accept" in dialog.status.text())
        dialog.adjustSize()  # the wrapped error needs more height than the dialog first had
        wait(app, lambda: True, seconds=0.2)
        save(dialog, args.out / "connect.png")
        dialog.close()
        window.close()


if __name__ == "__main__":
    main()
