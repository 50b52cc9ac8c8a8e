"""The config page against a real API process: issues at their lines, publish, edge acks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from lensflow.cloud.control import ConfigService
from lensflow.cloud.storage import ResultStore, create_engine_for
from lensflow.cloud.storage.models import utcnow
from lensflow.desktop.api_types import ConfigIssue, ConfigVersion, EdgeInfo
from lensflow.desktop.client import ApiClient
from lensflow.desktop.config_editor import ConfigEditor
from lensflow.desktop.edge_table import COLUMN_NAMES, EdgeTableModel
from lensflow.desktop.pipeline_api import pipeline_issues
from lensflow.desktop.pipeline_editor import PipelineEditor
from lensflow.desktop.yaml_editor import YamlEditor
from lensflow.services.process import free_port
from lensflow.shared.protocol import ConfigAck, StatusMessage
from tests.support.review_api import ReviewApi

CONFIG = """\
detector: {backend: onnxruntime, model: /models/person.onnx, conf_threshold: 0.3}
cameras:
  - name: lobby
    source: {type: folder, path: /data/lobby, loop: true}
    fps: 2
heartbeat_s: 5
"""
EDGES = {"edge-1": 0, "edge-2": 0, "edge-old": 3600}  # agent -> seconds since last heard
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApi]:
    """A served API that three edges reported to, one of them an hour ago."""
    with ReviewApi(tmp_path_factory.mktemp("config-api"), search=False) as served:
        engine = create_engine_for(served.url)
        try:
            for agent, age in EDGES.items():
                ResultStore(engine).upsert_edge_status(
                    site="plant-a",
                    agent_id=agent,
                    status=StatusMessage(state="online", agent_version="0.1.0", timestamp=utcnow()),
                    seen_at=utcnow() - timedelta(seconds=age),
                )
        finally:
            engine.dispose()
        yield served


def _editor(qtbot: QtBot, url: str, key: str) -> ConfigEditor:
    client = ApiClient(url, key=key)
    editor = ConfigEditor(client, refresh_ms=0)
    qtbot.addWidget(editor)
    editor.destroyed.connect(client.close)
    return editor


@pytest.fixture
def editor(qtbot: QtBot, api: ReviewApi) -> ConfigEditor:
    """The page shown, its edges listed and the first edge's config loaded."""
    page = _editor(qtbot, api.base_url, api.tokens["operator"])
    page.resize(1200, 700)
    page.show()
    qtbot.waitExposed(page)
    with qtbot.waitSignals([page.edges_refreshed, page.edge_config_loaded], timeout=WAIT_MS):
        page.start()
    return page


def _click_row(qtbot: QtBot, editor: ConfigEditor, agent: str, *, add: bool = False) -> None:
    """Click an edge's row (Ctrl+click with ``add``), as the operator does."""
    [row] = [r for r, e in enumerate(editor.edge_model.edges()) if e.agent_id == agent]
    where = editor.edge_view.visualRect(editor.edge_model.index(row, 1)).center()
    modifier = Qt.KeyboardModifier.ControlModifier if add else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(editor.edge_view.viewport(), Qt.MouseButton.LeftButton, modifier, where)  # type: ignore[no-untyped-call]


def _answer(qtbot: QtBot, editor: ConfigEditor, *, publish: bool) -> None:
    """Click Publish (or Cancel) in the confirmation the page shows."""
    qtbot.waitUntil(lambda: editor.confirm_box is not None and editor.confirm_box.isVisible())
    box = editor.confirm_box
    assert box is not None
    role = QMessageBox.ButtonRole.AcceptRole if publish else QMessageBox.ButtonRole.RejectRole
    [button] = [b for b in box.buttons() if box.buttonRole(b) == role]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]


def _version_ids(api: ReviewApi) -> list[int]:
    with ApiClient(api.base_url, key=api.tokens["viewer"]) as client:
        return [v.id for v in client.configs()]


def _row(model: EdgeTableModel, agent: str) -> dict[str, str]:
    [row] = [r for r, e in enumerate(model.edges()) if e.agent_id == agent]
    cells = (model.data(model.index(row, c)) for c in range(model.columnCount()))
    return dict(zip(COLUMN_NAMES, (str(v) for v in cells), strict=True))


def _record_ack(api: ReviewApi, agent: str, ack: ConfigAck) -> None:
    """Record an edge's ack as the control plane does when it arrives over MQTT."""
    engine = create_engine_for(api.url)
    try:
        assert ConfigService(engine).record_ack(site="plant-a", agent_id=agent, ack=ack)
    finally:
        engine.dispose()


# -- the YAML editor alone -----------------------------------------------------------------------


def test_issues_tint_their_lines_and_explain_them(qtbot: QtBot) -> None:
    editor = YamlEditor()
    qtbot.addWidget(editor)
    editor.set_text(CONFIG)

    editor.set_issues(
        [
            ConfigIssue(message="must be > 0", field="cameras.0.fps", line=5),
            ConfigIssue(message="too large"),  # no line: listed only
            ConfigIssue(message="beyond the text", line=99),
        ]
    )

    assert editor.highlighted_lines() == [5]
    assert editor.messages_at(5) == ["cameras.0.fps: must be > 0"]
    assert editor.issue_list.count() == 3
    editor.issue_list.itemClicked.emit(editor.issue_list.item(0))
    assert editor.text_edit.textCursor().blockNumber() == 4
    editor.set_text("x: 1\n")
    assert editor.highlighted_lines() == [] and editor.issue_list.count() == 0


# -- against the real API -----------------------------------------------------------------------


@pytest.mark.integration
def test_the_edge_table_shows_online_state_and_no_assignment(editor: ConfigEditor) -> None:
    assert [e.agent_id for e in editor.edge_model.edges()] == sorted(EDGES)
    assert _row(editor.edge_model, "edge-1")["Online"] == "online"
    assert _row(editor.edge_model, "edge-old")["Online"] == "offline"  # not heard for an hour
    assert _row(editor.edge_model, "edge-old")["Ack"] == "—"  # never assigned a config


@pytest.mark.integration
def test_api_validation_errors_are_shown_at_their_lines(qtbot: QtBot, editor: ConfigEditor) -> None:
    editor.editor.set_text(CONFIG.replace("fps: 2", "fps: -1").replace("_s: 5", "_s: -5"))

    with qtbot.waitSignal(editor.validated, timeout=WAIT_MS) as answer:
        qtbot.mouseClick(editor.validate_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    assert not answer.args[0].valid
    assert editor.editor.highlighted_lines() == [5, 6]
    assert editor.editor.messages_at(5) == ["cameras.0.fps: Input should be greater than 0"]
    assert editor.editor.messages_at(6) == ["heartbeat_s: Input should be greater than 0"]
    assert "2 problems in the config (lines 5, 6)" in editor.status.text()


@pytest.mark.integration
def test_every_problem_is_marked_at_once_on_the_line_of_its_key(
    qtbot: QtBot, editor: ConfigEditor
) -> None:
    # the operator's case: `mqtt:` on line 3 was flagged as line 4, and alone
    text = (
        "detector: {backend: onnxruntime, model: /models/person.onnx}\n"
        "heartbeat_s: -5\n"
        "mqtt:\n"
        "  host: broker\n"
        "cameras:\n"
        "  - name: lobby\n"
        "    source: {type: folder, path: /data/lobby}\n"
        "    fsp: 2\n"
    )
    editor.editor.set_text(text)

    with qtbot.waitSignal(editor.validated, timeout=WAIT_MS):
        qtbot.mouseClick(editor.validate_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    assert editor.editor.highlighted_lines() == [2, 3, 8]
    assert "stays in each agent's local file" in editor.editor.messages_at(3)[0]
    assert editor.editor.messages_at(4) == []
    assert "3 problems in the config (lines 2, 3, 8)" in editor.status.text()


@pytest.mark.integration
def test_a_valid_config_shows_its_hash(qtbot: QtBot, editor: ConfigEditor) -> None:
    editor.editor.set_text(CONFIG)

    with qtbot.waitSignal(editor.validated, timeout=WAIT_MS) as answer:
        editor.validate()

    assert answer.args[0].valid and editor.editor.highlighted_lines() == []
    assert answer.args[0].config_hash in editor.status.text()


@pytest.mark.integration
def test_publish_assigns_the_selected_edges_which_show_pending_then_their_ack(
    qtbot: QtBot, editor: ConfigEditor, api: ReviewApi
) -> None:
    text = CONFIG.replace("fps: 2", "fps: 4")
    editor.editor.set_text(text)
    editor.comment.setText("faster lobby")
    assert editor.selected_edges() == [("plant-a", "edge-1")]  # the first edge, at start

    with qtbot.waitSignal(editor.published, timeout=WAIT_MS) as done:
        qtbot.mouseClick(editor.publish_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
        _answer(qtbot, editor, publish=True)
    version: ConfigVersion = done.args[0]
    qtbot.waitUntil(lambda: _row(editor.edge_model, "edge-1")["Ack"] == "pending", timeout=WAIT_MS)

    assert (version.text, version.comment) == (text, "faster lobby")
    assert _row(editor.edge_model, "edge-1")["Config version"] == str(version.id)
    assert _row(editor.edge_model, "edge-old")["Ack"] == "—"  # not selected, not assigned
    qtbot.waitUntil(lambda: editor.versions.count() > 0, timeout=WAIT_MS)
    assert editor.versions.itemText(0).startswith(f"#{version.id} ")

    _record_ack(api, "edge-1", ConfigAck(hash=version.config_hash, status="applied"))
    editor.refresh_edges()
    qtbot.waitUntil(lambda: _row(editor.edge_model, "edge-1")["Ack"] == "applied", timeout=WAIT_MS)
    assert editor.selected_edges() == [("plant-a", "edge-1")]  # kept across refreshes


@pytest.mark.integration
def test_with_no_edge_selected_nothing_is_published(
    qtbot: QtBot, editor: ConfigEditor, api: ReviewApi
) -> None:
    before = _version_ids(api)
    _click_row(qtbot, editor, "edge-1", add=True)  # Ctrl+click: the selected row is deselected
    assert editor.selected_edges() == []
    editor.editor.set_text(CONFIG.replace("fps: 2", "fps: 9"))

    with qtbot.waitSignal(editor.failed, timeout=WAIT_MS) as failure:
        qtbot.mouseClick(editor.publish_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    assert "Nothing published" in failure.args[0]
    assert editor.confirm_box is None  # not even asked
    assert _version_ids(api) == before
    with qtbot.assertNotEmitted(editor.published, wait=300):
        editor.publish()  # nor without asking


@pytest.mark.integration
def test_publishing_asks_naming_the_edges_and_cancel_publishes_nothing(
    qtbot: QtBot, editor: ConfigEditor, api: ReviewApi
) -> None:
    before = _version_ids(api)
    _click_row(qtbot, editor, "edge-2")
    _click_row(qtbot, editor, "edge-old", add=True)
    editor.editor.set_text(CONFIG.replace("fps: 2", "fps: 6"))

    qtbot.mouseClick(editor.publish_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    _answer(qtbot, editor, publish=False)

    assert editor.confirm_box is not None
    assert "2 edges: plant-a/edge-2, plant-a/edge-old?" in editor.confirm_box.text()
    with qtbot.assertNotEmitted(editor.published, wait=500):
        pass
    assert _version_ids(api) == before


@pytest.mark.integration
def test_the_editor_starts_from_the_selected_edges_current_config(
    qtbot: QtBot, api: ReviewApi
) -> None:
    with ApiClient(api.base_url, key=api.tokens["operator"]) as client:
        first = client.create_config(CONFIG.replace("fps: 2", "fps: 11"), comment="edge-1's")
        second = client.create_config(CONFIG.replace("fps: 2", "fps: 12"), comment="edge-2's")
        client.assign_config(first.id, [("plant-a", "edge-1")])
        client.assign_config(second.id, [("plant-a", "edge-2")])

    page = _editor(qtbot, api.base_url, api.tokens["operator"])
    page.resize(1200, 700)
    page.show()
    qtbot.waitExposed(page)
    with qtbot.waitSignal(page.edge_config_loaded, timeout=WAIT_MS):
        page.start()

    assert page.editor.text() == first.text  # not blank: edge-1 (selected) runs it
    assert f"version #{first.id}" in page.status.text()

    with qtbot.waitSignal(page.edge_config_loaded, timeout=WAIT_MS):
        _click_row(qtbot, page, "edge-2")
    assert page.editor.text() == second.text

    page.editor.text_edit.setFocus()
    qtbot.keyClicks(page.editor.text_edit, "# mine")  # type: ignore[no-untyped-call]
    qtbot.keyClick(page.editor.text_edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
    edited = page.editor.text()
    _click_row(qtbot, page, "edge-1")
    assert page.editor.text() == edited  # an edit is not thrown away by a click
    assert "Kept your edits" in page.status.text()

    with qtbot.waitSignal(page.edge_config_loaded, timeout=WAIT_MS):
        qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    assert page.editor.text() == first.text


@pytest.mark.integration
def test_a_rejection_shows_the_edge_reason(
    qtbot: QtBot, editor: ConfigEditor, api: ReviewApi
) -> None:
    editor.editor.set_text(CONFIG.replace("heartbeat_s: 5", "heartbeat_s: 7"))
    with qtbot.waitSignal(editor.published, timeout=WAIT_MS) as done:
        editor.publish([("plant-a", "edge-2")])

    _record_ack(
        api,
        "edge-2",
        ConfigAck(hash=done.args[0].config_hash, status="rejected", error="model file missing"),
    )
    editor.refresh_edges()

    qtbot.waitUntil(lambda: _row(editor.edge_model, "edge-2")["Ack"] == "rejected", timeout=WAIT_MS)
    assert _row(editor.edge_model, "edge-2")["Error"] == "model file missing"


@pytest.mark.integration
def test_an_invalid_config_is_not_published_and_its_lines_are_marked(
    qtbot: QtBot, editor: ConfigEditor, api: ReviewApi
) -> None:
    with ApiClient(api.base_url, key=api.tokens["viewer"]) as client:
        before = [v.id for v in client.configs()]
    editor.editor.set_text(CONFIG.replace("fps: 2", "fsp: 2"))

    with qtbot.waitSignal(editor.failed, timeout=WAIT_MS) as failure:
        editor.publish([("plant-a", "edge-1")])

    assert "Not published" in failure.args[0] and "line" in failure.args[0]
    assert editor.editor.highlighted_lines() == [5]
    assert editor.publish_button.isEnabled()
    with ApiClient(api.base_url, key=api.tokens["viewer"]) as client:
        assert [v.id for v in client.configs()] == before


@pytest.mark.integration
def test_a_viewer_key_cannot_publish_and_is_told_why(qtbot: QtBot, api: ReviewApi) -> None:
    page = _editor(qtbot, api.base_url, api.tokens["viewer"])
    page.editor.set_text(CONFIG)

    with qtbot.waitSignal(page.failed, timeout=WAIT_MS) as failure:
        page.publish([("plant-a", "edge-1")])

    assert "operator key" in failure.args[0]
    assert failure.args[0] in page.status.text()


def test_an_unreachable_api_is_reported_not_raised(qtbot: QtBot, tmp_path: Path) -> None:
    page = _editor(qtbot, f"http://127.0.0.1:{free_port()}", "lfk_x")

    with qtbot.waitSignal(page.failed, timeout=WAIT_MS) as failure:
        page.refresh_edges()

    assert "Cannot reach the API" in failure.args[0]
    assert page.edge_model.rowCount() == 0


def test_the_table_colours_each_ack(qtbot: QtBot) -> None:
    model = EdgeTableModel()
    base = {"site": "s", "online": True, "state": "online"}
    desired = {
        "site": "s",
        "config_version_id": 1,
        "desired_hash": "sha256:" + "a" * 64,
        "assigned_at": utcnow(),
    }
    model.set_edges(
        [
            EdgeInfo.model_validate(
                base | {"agent_id": f"a{i}", "desired": desired | {"agent_id": f"a{i}", **ack}}
            )
            for i, ack in enumerate(
                [{"ack_status": "applied"}, {"ack_status": "rejected", "error": "bad"}]
            )
        ]
    )
    ack = COLUMN_NAMES.index("Ack")

    colors = [model.data(model.index(r, ack), Qt.ItemDataRole.BackgroundRole) for r in (0, 1)]

    assert colors[0] is not None and colors[1] is not None and colors[0] != colors[1]
    assert model.data(model.index(1, 0), Qt.ItemDataRole.ToolTipRole) == "Rejected: bad"


# -- the pipeline DAG page ------------------------------------------------------------------------

PIPELINE = """\
version: 1
pipeline:
  - name: object_detection
    class: edge_detection
  - name: second
    class: no_such_plugin
    depends_on: [object_detection, ghost]
"""


def test_the_pipeline_page_marks_each_dag_problem_at_its_line(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE)
    page = PipelineEditor()
    qtbot.addWidget(page)

    with qtbot.waitSignal(page.validated, timeout=WAIT_MS) as answer:
        page.open(path)

    assert {(i.line, i.field) for i in answer.args[0]} == {
        (6, "pipeline.1.class"),
        (7, "pipeline.1.depends_on.1"),
    }
    assert page.editor.highlighted_lines() == [6, 7]
    assert "unknown node 'ghost'" in page.editor.messages_at(7)[0]


def test_the_pipeline_page_saves_a_fixed_dag(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE)
    page = PipelineEditor()
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.validated, timeout=WAIT_MS):
        page.open(path)
    fixed = PIPELINE.split("  - name: second")[0]
    page.editor.set_text(fixed)

    with qtbot.waitSignal(page.validated, timeout=WAIT_MS) as answer:
        page.validate()
    page.save()

    assert answer.args[0] == [] and page.editor.highlighted_lines() == []
    assert path.read_text() == fixed
    assert pipeline_issues("pipeline: [\n")[0].line == 2  # YAML syntax errors too
