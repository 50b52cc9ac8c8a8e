"""Reviewing in the app against a served API: filter, page, relabel by key, bulk, undo, live."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from pytestqt.qtbot import QtBot

from lensflow.desktop.client import ApiClient
from lensflow.desktop.main_window import MainWindow
from tests.desktop.app_support import SEEDED, ReviewSetup, filter_camera, open_window

pytestmark = pytest.mark.integration


def _human_label(setup: ReviewSetup, crop_id: str, node: str = "detection") -> str | None:
    """The crop's current human label as the API has it."""
    with ApiClient(setup.api.base_url, key=setup.api.tokens["viewer"]) as client:
        return client.result(crop_id).human_labels.get(node)


def test_the_first_page_then_more_pages_load_as_the_view_scrolls(
    review_setup: ReviewSetup, qtbot: QtBot, tmp_path: Path
) -> None:
    with open_window(review_setup, qtbot, tmp_path, role="viewer") as window:
        window.model.page_size = 25  # three pages for the 60 seeded crops
        window.model.refresh()
        qtbot.waitUntil(lambda: window.model.rowCount() == 25, timeout=10_000)

        while not window.model.exhausted:
            window.grid.scrollToBottom()  # the view asks for the next page near the end
            window.model.fetchMore()  # in case it did not (yet): a no-op while one loads
            qtbot.waitUntil(lambda: not window.model.loading, timeout=10_000)

        ids = [item.crop_id for item in window.model.items()]
        assert len(ids) >= SEEDED
        assert len(set(ids)) == len(ids)  # keyset pages: no duplicates
        times = [item.captured_at for item in window.model.items()]
        assert times == sorted(times, reverse=True)  # newest first


def test_filters_reach_the_api(window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot) -> None:
    camera, crops = review_setup.fresh_camera(6)
    trucks = {crop.crop_id for crop in crops if crop.class_name == "truck"}

    filter_camera(window, qtbot, camera, rows=6)
    window.filters.class_name.setCurrentText("truck")
    window.filters.apply_now()
    qtbot.waitUntil(
        lambda: window.model.query.class_name == "truck" and not window.model.loading,
        timeout=10_000,
    )

    assert {item.crop_id for item in window.model.items()} == trucks
    assert all(item.camera == camera for item in window.model.items())


def test_a_number_key_relabels_the_crop_and_moves_on(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(3)
    filter_camera(window, qtbot, camera, rows=3)
    qtbot.waitUntil(lambda: bool(window.flow.schemas.keys("detection")), timeout=10_000)
    window.select_row(0)
    first = window.model.item(0)
    keys = window.flow.schemas.keys("detection")
    key, target = next(
        (k, label.name) for k, label in keys.items() if label.name != first.detection.class_name
    )
    window.grid.setFocus()

    qtbot.keyClick(window.grid, Qt.Key(Qt.Key.Key_0 + int(key)))  # type: ignore[no-untyped-call]

    qtbot.waitUntil(lambda: window.model.item(0).human_labels.get("detection") == target)
    assert _human_label(review_setup, first.crop_id) == target  # through the API's audit trail
    assert window.grid.selectionModel().currentIndex().row() == 1  # on to the next crop


def test_ctrl_z_undoes_the_last_relabel_through_the_api(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(2)
    filter_camera(window, qtbot, camera, rows=2)
    qtbot.waitUntil(lambda: bool(window.flow.schemas.keys("detection")), timeout=10_000)
    window.select_row(1)
    item = window.model.item(1)
    crop_id = item.crop_id
    other = next(n for n in ("person", "car", "truck") if n != item.detection.class_name)
    window.relabel.relabel([crop_id], label=other)
    qtbot.waitUntil(lambda: _human_label(review_setup, crop_id) == other, timeout=10_000)
    qtbot.waitUntil(lambda: window.relabel.undo_stack != [])
    window.grid.setFocus()

    qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # type: ignore[no-untyped-call]

    qtbot.waitUntil(lambda: "Undone" in window.statusBar().currentMessage(), timeout=10_000)
    assert _human_label(review_setup, crop_id) is None
    assert window.model.item(1).human_labels == {}


def test_a_selection_is_relabelled_in_one_batch(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, crops = review_setup.fresh_camera(5)
    filter_camera(window, qtbot, camera, rows=5)
    selection = window.grid.selectionModel()
    selection.clearSelection()
    for row in (0, 2, 4):
        selection.select(window.model.index(row, 0), QItemSelectionModel.SelectionFlag.Select)
    chosen = [window.model.item(row).crop_id for row in (0, 2, 4)]

    qtbot.waitUntil(lambda: bool(window.flow.schemas.keys("detection")), timeout=10_000)
    window.relabel.relabel_selection("person")

    qtbot.waitUntil(lambda: len(window.relabel.undo_stack) == 1, timeout=10_000)
    assert [_human_label(review_setup, crop_id) for crop_id in chosen] == ["person"] * 3
    others = {crop.crop_id for crop in crops} - set(chosen)
    assert all(_human_label(review_setup, crop_id) is None for crop_id in others)
    assert len(window.relabel.undo_stack[0].batch_ids) == 1  # one batch: one undo step


def test_a_new_result_appears_while_the_app_is_open(
    review_setup: ReviewSetup, qtbot: QtBot, tmp_path: Path
) -> None:
    with open_window(review_setup, qtbot, tmp_path, role="viewer", live_interval_ms=200) as window:
        camera, crops = review_setup.fresh_camera(2)
        filter_camera(window, qtbot, camera, rows=2)

        newer = review_setup.api.seed(
            1,
            prefix=f"{camera}-late",
            cameras=(camera,),
            start=crops[-1].captured_at + timedelta(minutes=5),
            seed=99,
        )

        qtbot.waitUntil(lambda: window.model.rowCount() == 3, timeout=10_000)
        assert window.model.item(0).crop_id == newer[0].crop_id
