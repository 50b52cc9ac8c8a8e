"""Decisions an operator can trust, against a served API (issue 16's defects 1, 2, 3, 6 and 8).

Number keys come from the node's label schema and never move; reject and unsure are review
statuses, not classes; L takes only labels of the schema (a new one only when confirmed); a
save the API did not get does not advance, is marked unsaved, retried and kept, and quitting
with it asks; the filters offer the API's values; the queue sorts reach the API.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from lensflow.desktop.api_review_types import QueueQuery, ReviewItem
from lensflow.desktop.api_types import ResultQuery
from lensflow.desktop.client import ApiClient
from lensflow.desktop.main_window import MainWindow
from lensflow.desktop.save_queue import SaveQueue
from tests.desktop.app_support import ReviewSetup, filter_camera, open_window, served_review_api
from tests.support.review_data import CropEmbedder

pytestmark = pytest.mark.integration
DETECTION_KEYS = {"1": "person", "2": "car", "3": "truck"}
"""The seeded edge model's classes in model order: the detection schema's keys."""


def _item(setup: ReviewSetup, camera: str, crop_id: str) -> ReviewItem:
    """The crop as the API has it now, with its reviews."""
    with ApiClient(setup.api.base_url, key=setup.api.tokens["viewer"]) as client:
        page = client.review_queue(QueueQuery(filters=ResultQuery(camera=camera)), limit=100)
    return next(item for item in page.items if item.crop_id == crop_id)


def _key(qtbot: QtBot, window: MainWindow, key: Qt.Key, modifier: object = None) -> None:
    window.grid.setFocus()
    if modifier is None:
        qtbot.keyClick(window.grid, key)  # type: ignore[no-untyped-call]
    else:
        qtbot.keyClick(window.grid, key, modifier)  # type: ignore[no-untyped-call]


def _keys_loaded(window: MainWindow, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: window.flow.schemas.schema("detection") is not None, timeout=10_000)


def test_number_keys_come_from_the_schema_and_never_move(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(3)
    filter_camera(window, qtbot, camera, rows=3)
    _keys_loaded(window, qtbot)
    schemas = window.flow.schemas
    first = {key: label.name for key, label in schemas.keys("detection").items()}
    assert {k: v for k, v in first.items() if k in DETECTION_KEYS} == DETECTION_KEYS
    shown = [b.text() for b in window.label_bar.keys if not b.isHidden()]
    assert shown[:3] == ["1 person", "2 car", "3 truck"]

    # an operator adds a label elsewhere: a new schema version; the keys shown stay put
    with ApiClient(review_setup.api.base_url, key=review_setup.api.tokens["admin"]) as admin:
        added = admin.add_label("detection", f"cone-{camera}")
    schemas.fetch("detection")
    qtbot.waitUntil(lambda: schemas.schema("detection").version == added.version)  # type: ignore[union-attr]
    keys = {key: label.name for key, label in schemas.keys("detection").items()}
    assert {k: v for k, v in keys.items() if k in first} == first  # nothing moved

    window.select_row(0)
    crop_id = window.model.item(0).crop_id
    _key(qtbot, window, Qt.Key.Key_2)
    qtbot.waitUntil(
        lambda: _item(review_setup, camera, crop_id).human_labels == {"detection": "car"}
    )
    assert window.current_row() == 1  # saved and moved on
    assert _item(review_setup, camera, crop_id).reviews["detection"].status == "relabelled"


def test_r_rejects_as_a_status_not_a_class_and_ctrl_z_undoes_it(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(2)
    filter_camera(window, qtbot, camera, rows=2)
    window.select_row(0)
    crop_id = window.model.item(0).crop_id

    _key(qtbot, window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: "detection" in _item(review_setup, camera, crop_id).reviews)
    stored = _item(review_setup, camera, crop_id)
    assert stored.reviews["detection"].status == "rejected"
    assert stored.human_labels == {}  # no class "rejected"
    qtbot.waitUntil(lambda: window.model.item(0).reviews.get("detection") is not None)
    text = window.model.data(window.model.index(0, 5))
    assert text.startswith("✗ rejected") and "✓" not in text
    assert "rejected" not in window.flow.schemas.names("detection")

    assert window.current_row() == 1  # R advanced
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "Undone" in window.statusBar().currentMessage(), timeout=10_000)
    assert _item(review_setup, camera, crop_id).reviews == {}
    assert window.model.item(0).reviews == {}
    assert window.current_row() == 0  # back on the crop undone: the right key corrects it


def test_u_marks_unsure_and_n_goes_to_the_next_unreviewed(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(4)
    filter_camera(window, qtbot, camera, rows=4)
    window.select_row(1)
    second = window.model.item(1).crop_id
    _key(qtbot, window, Qt.Key.Key_U)
    qtbot.waitUntil(lambda: "detection" in window.model.item(1).reviews)
    assert _item(review_setup, camera, second).reviews["detection"].status == "unsure"
    assert window.current_row() == 2

    window.select_row(0)
    _key(qtbot, window, Qt.Key.Key_A)  # row 0 accepted, on to row 1 (unsure)
    qtbot.waitUntil(lambda: "detection" in window.model.item(0).reviews)
    window.select_row(0)
    _key(qtbot, window, Qt.Key.Key_N)
    assert window.current_row() == 2  # 1 is reviewed (unsure): skipped


def test_l_takes_only_labels_of_the_schema_and_a_new_one_only_when_confirmed(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(3)
    filter_camera(window, qtbot, camera, rows=3)
    _keys_loaded(window, qtbot)
    window.select_row(0)
    crop_id = window.model.item(0).crop_id

    _key(qtbot, window, Qt.Key.Key_L)
    dialog = window.flow.label_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClicks(dialog.edit, " Truck ")  # case and spaces do not make a new class
    qtbot.keyClick(dialog.edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
    qtbot.waitUntil(
        lambda: _item(review_setup, camera, crop_id).human_labels == {"detection": "truck"}
    )
    assert window.current_row() == 1  # L advances like the other keys

    _key(qtbot, window, Qt.Key.Key_L)
    dialog = window.flow.label_dialog
    qtbot.keyClicks(dialog.edit, "fall ")
    qtbot.keyClick(dialog.edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
    assert dialog.isVisible() and "not a label of detection" in dialog.note.text()
    box = dialog.ask_add()  # "Add label…" asks first; Cancel creates nothing
    assert box is not None and "Add 'fall' to the labels of detection?" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    with ApiClient(review_setup.api.base_url, key=review_setup.api.tokens["viewer"]) as client:
        assert "fall" not in client.label_schema("detection").names()
    assert window.current_row() == 1  # nothing decided, nothing advanced

    box = dialog.ask_add()  # confirmed: a new schema version, and the crop gets it
    assert box is not None
    add = next(b for b in box.buttons() if b.text() == "Add 'fall'")
    add.click()
    crop_id = window.model.item(1).crop_id
    qtbot.waitUntil(
        lambda: _item(review_setup, camera, crop_id).human_labels == {"detection": "fall"},
        timeout=10_000,
    )
    with ApiClient(review_setup.api.base_url, key=review_setup.api.tokens["viewer"]) as client:
        assert "fall" in client.label_schema("detection").names()
    assert window.current_row() == 2  # the crop has its label: moved on


def test_a_save_the_api_did_not_get_does_not_advance_is_kept_and_retried(
    tmp_path: Path, qtbot: QtBot, crop_embedder: CropEmbedder
) -> None:
    served = served_review_api(tmp_path / "api", embedder=crop_embedder)
    with served as setup, open_window(setup, qtbot, tmp_path, role="operator") as window:
        window.flow.queue.backoff_s = (0.2, 0.4)
        camera, _crops = setup.fresh_camera(3)
        filter_camera(window, qtbot, camera, rows=3)
        window.select_row(0)
        first, second = window.model.item(0).crop_id, window.model.item(1).crop_id

        setup.api.stop()  # the API goes away mid-session
        _key(qtbot, window, Qt.Key.Key_A)  # sent before anyone knows: moves on, kept
        qtbot.waitUntil(lambda: window.flow.queue.failing_now, timeout=15_000)
        assert window.model.is_unsaved(first)
        assert "unsaved" in window.model.data(window.model.index(0, 5))
        assert "Not saved yet" in window.last_error
        assert window.current_row() == 1
        _key(qtbot, window, Qt.Key.Key_R)  # while failing: kept, the list stays
        assert window.current_row() == 1
        assert window.model.is_unsaved(second)
        assert "unsaved decision(s)" in window.label_bar.pending.text()

        window.quit_choice = QMessageBox.StandardButton.Cancel
        assert not window.close()  # unsaved decisions: quitting asks, Cancel stays
        assert window.isVisible()

        setup.api.start()
        qtbot.waitUntil(lambda: not window.flow.queue.pending(), timeout=20_000)
        assert window.last_error == ""  # the banner cleared itself
        assert window.label_bar.pending.text() == ""
        assert not window.model.is_unsaved(first) and not window.model.is_unsaved(second)
        assert _item(setup, camera, first).reviews["detection"].status == "accepted"
        assert _item(setup, camera, second).reviews["detection"].status == "rejected"
        window.quit_choice = None  # nothing unsaved: closes without asking


def test_the_filters_offer_the_apis_values_and_the_queue_sorts_reach_it(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    filters = window.filters
    qtbot.waitUntil(lambda: filters.class_name.count() > 1, timeout=10_000)
    offered = [filters.class_name.itemData(i) for i in range(1, filters.class_name.count())]
    assert {"person", "car", "truck"} <= set(offered)
    assert "(" in filters.class_name.itemText(1)  # with its count
    assert filters.camera.count() > 1 and filters.node.count() > 1

    filters.class_name.setCurrentIndex(offered.index("car") + 1)
    filters.sort.setCurrentText("Lowest confidence first")
    filters.apply_now()
    qtbot.waitUntil(
        lambda: window.model.queue.sort == "confidence_asc" and not window.model.loading,
        timeout=10_000,
    )
    items = window.model.items()
    assert items and {item.detection.class_name for item in items} == {"car"}
    scores = [item.detection.score for item in items]
    assert scores == sorted(scores)  # lowest confidence first


def test_the_save_queue_keeps_order_and_drops_nothing_unit() -> None:
    """Without a client, decisions wait in order; taking the last back removes only it."""
    from lensflow.desktop.save_queue import Decision
    from lensflow.desktop.workers import Runner

    runner = Runner(threads=1)
    queue = SaveQueue(runner, lambda: None)
    a = Decision("status", ("c1",), "detection", status="accepted")
    b = Decision("label", ("c2",), "detection", label="car")
    c = Decision("label", ("c2",), "detection", label="truck")  # replaces b: same crops
    for decision in (a, b, c):
        queue.push(decision)
    assert [d.number for d in queue.pending()] == [a.number, c.number]
    assert queue.take_last() == c
    assert queue.pending() == [a]
