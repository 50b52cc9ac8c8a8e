"""The main window's similar crops, export and configuration against a served API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from lensflow.cloud.storage import ResultStore, create_engine_for
from lensflow.cloud.storage.models import utcnow
from lensflow.desktop.api_types import ResultQuery
from lensflow.desktop.client import ApiClient
from lensflow.desktop.inspector import SIMILAR_K
from lensflow.desktop.main_window import MainWindow
from lensflow.shared.protocol import StatusMessage
from tests.desktop.app_support import ReviewSetup, filter_camera

pytestmark = pytest.mark.integration
WAIT_MS = 15_000


def _trigger(window: MainWindow, text: str) -> None:
    """Trigger the window's menu action ``text`` (as a click in the menu does)."""
    [action] = [a for a in window.actions() if a.text() == text]
    action.trigger()


def _viewer(setup: ReviewSetup) -> ApiClient:
    return ApiClient(setup.api.base_url, key=setup.api.tokens["viewer"])


# -- similar crops ------------------------------------------------------------------------------


def test_the_inspector_shows_the_api_similar_crops_and_relabels_exactly_them(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    window.select_row(3)
    inspected = window.model.item(3)
    qtbot.waitUntil(
        lambda: (
            window.inspector.item == inspected and len(window.inspector.similar_hits()) == SIMILAR_K
        ),
        timeout=WAIT_MS,
    )
    hits = window.inspector.similar_hits()
    with _viewer(review_setup) as client:
        answer = client.similar(inspected.crop_id, k=SIMILAR_K)
    assert [h.crop_id for h in hits] == [h.crop_id for h in answer.items]
    assert inspected.crop_id not in {h.crop_id for h in hits}
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert answer.node == "embeddings"
    shown = window.inspector.similar_list
    assert [shown.item(r).data(Qt.ItemDataRole.UserRole) for r in range(shown.count())] == [
        h.crop_id for h in hits
    ]

    # a person already decided one look-alike: the bulk edit leaves it alone by default
    decided = hits[0].crop_id
    with ApiClient(review_setup.api.base_url, key=review_setup.api.tokens["operator"]) as op:
        op.review([decided], "rejected")
    qtbot.waitUntil(lambda: window.flow.schemas.schema("detection") is not None, timeout=WAIT_MS)
    window.inspector.relabel_button.click()  # Relabel all similar…: a preview first
    dialog = window.flow.similar_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.k.setValue(SIMILAR_K)
    dialog.threshold.setValue(0.5)
    dialog.label.setCurrentText("person")
    qtbot.waitUntil(
        lambda: dialog.previewed == dialog.ask() and dialog.apply_button.isEnabled(),
        timeout=WAIT_MS,
    )
    preview = dialog.preview
    assert preview is not None and preview.skipped_human == 1
    assert decided not in preview.crop_ids
    groups = {dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())}
    assert all("→ person" in text for text in groups)  # grouped by current label
    changed = set(preview.crop_ids)

    dialog.apply_button.click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    with _viewer(review_setup) as client:
        stored = {
            i.crop_id: i for i in client.results(ResultQuery(label="person"), limit=500).items
        }
        humans = {crop_id for crop_id, i in stored.items() if i.human_labels.get("detection")}
        assert changed <= humans  # exactly the previewed crops now carry the person label
        assert client.result(decided).human_labels == {}  # the person's decision stands
    assert len(window.relabel.undo_stack[-1].batch_ids) == 1  # one undoable batch
    window.relabel.undo()
    with _viewer(review_setup) as client:
        qtbot.waitUntil(
            lambda: all(not client.result(c).human_labels for c in changed), timeout=WAIT_MS
        )


def test_a_crop_without_embedding_says_so_instead_of_failing(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    camera, _crops = review_setup.fresh_camera(1, embedded=False)
    filter_camera(window, qtbot, camera, rows=1)
    window.select_row(0)
    qtbot.waitUntil(
        lambda: window.inspector.similar_status.text() == "this crop has no embedding",
        timeout=WAIT_MS,
    )
    assert window.last_error == ""


# -- export -------------------------------------------------------------------------------------


def test_export_from_the_menu_writes_the_filtered_labelled_crops(
    window: MainWindow,
    review_setup: ReviewSetup,
    qtbot: QtBot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    camera, crops = review_setup.fresh_camera(4)
    with ApiClient(review_setup.api.base_url, key=review_setup.api.tokens["operator"]) as client:
        client.relabel([crops[0].crop_id, crops[2].crop_id], label="truck")
        client.relabel([crops[3].crop_id], label="person")
    filter_camera(window, qtbot, camera, rows=4)
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "notes.txt").write_text("not empty")
    monkeypatch.setattr(
        "lensflow.desktop.window_tools.QFileDialog.getSaveFileName",
        lambda *_args, **_kw: (str(tmp_path / "exports"), ""),
    )
    monkeypatch.setattr(
        "lensflow.desktop.export_dialog.QMessageBox.information", lambda *_args: None
    )

    _trigger(window, "&Export…")
    dialog = window.tools.export_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.summary is not None or dialog.error is not None, timeout=WAIT_MS)

    assert dialog.error is None and dialog.summary is not None
    out = dialog.summary.path
    assert out.parent == tmp_path / "exports" and out.name.startswith("lensflow-export-")
    data = yaml.safe_load((out / "data.yaml").read_text())
    with _viewer(review_setup) as viewer:  # the schema's ids, whichever crops were exported
        schema = {label.id: label.name for label in viewer.label_schema("detection").labels}
    assert {i: data["names"][i] for i in schema} == schema
    images = sorted(p.stem for p in out.glob("images/*/*.jpg"))
    assert images == sorted([crops[0].crop_id, crops[2].crop_id, crops[3].crop_id])
    coco = [json.loads(f.read_text()) for f in out.glob("annotations/instances_*.json")]
    assert sum(len(split["annotations"]) for split in coco) == 3
    assert "Exported 3 crops" in window.statusBar().currentMessage()


def test_export_without_a_connection_is_explained(qtbot: QtBot, tmp_path: Path) -> None:
    from tests.desktop.app_support import make_window

    window = make_window(tmp_path)
    qtbot.addWidget(window)
    assert window.tools.export_to(tmp_path / "ds") is None
    assert "needs a connection" in window.last_error
    assert not (tmp_path / "ds").exists()


# -- configuration ------------------------------------------------------------------------------


def test_the_configuration_window_opens_on_the_edges_and_the_pipeline(
    window: MainWindow, review_setup: ReviewSetup, qtbot: QtBot
) -> None:
    engine = create_engine_for(review_setup.api.url)
    try:
        ResultStore(engine).upsert_edge_status(
            site="plant-z",
            agent_id="edge-tools",
            status=StatusMessage(state="online", agent_version="0.1.0", timestamp=utcnow()),
            seen_at=utcnow(),
        )
    finally:
        engine.dispose()

    _trigger(window, "Con&figuration…")
    config = window.tools.config_window
    assert config is not None and config.isVisible()
    qtbot.waitUntil(
        lambda: any(e.agent_id == "edge-tools" for e in config.configs.edge_model.edges()),
        timeout=WAIT_MS,
    )
    assert [config.tabs.tabText(i) for i in range(config.tabs.count())] == [
        "&Edge configs",
        "&Pipeline DAG",
        "&Rollouts",
    ]
    _trigger(window, "Con&figuration…")  # again: the same window, raised
    assert window.tools.config_window is config
