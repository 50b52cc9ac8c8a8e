"""The pipeline DAG page against a real API process: the active version drawn, validate, publish."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from lensflow.desktop.client import ApiClient
from lensflow.desktop.client_pipelines import PipelineVersion
from lensflow.desktop.config_window import ConfigWindow
from lensflow.desktop.dag_view import dag_nodes, layers
from lensflow.desktop.pipeline_editor import PipelineEditor
from lensflow.desktop.workers import Runner
from tests.support.review_api import ReviewApi

WAIT_MS = 15_000
GOOD = """\
version: 1
name: desk
pipeline:
  - name: object_detection
    class: edge_detection
  - name: shirt
    class: tshirt_color
    depends_on: object_detection
    when: {contains: [object_detection.detected_classes, person]}
"""
BROKEN = GOOD.replace("depends_on: object_detection", "depends_on: [object_detection, ghost]")
RUNNING = """\
version: 1
name: running
pipeline:
  - name: object_detection
    class: edge_detection
  - name: vehicle_type_classification
    class: vehicle_type
    depends_on: object_detection
    when:
      any:
        - {contains: [object_detection.detected_classes, car]}
        - {contains: [object_detection.detected_classes, bus]}
  - name: embedding
    class: embeddings
    depends_on: object_detection
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApi]:
    with ReviewApi(tmp_path_factory.mktemp("pipeline-api"), search=False) as served:
        yield served


@pytest.fixture
def client(api: ReviewApi) -> Iterator[ApiClient]:
    with ApiClient(api.base_url, key=api.tokens["operator"]) as connected:
        yield connected


@pytest.fixture
def runner(client: ApiClient) -> Iterator[Runner]:
    """The pages' runner; its calls end before the client closes."""
    pool = Runner(threads=1)
    yield pool
    pool.wait()


def _opened(qtbot: QtBot, client: ApiClient, runner: Runner) -> ConfigWindow:
    """The configuration window shown on the pipeline tab, its active version loaded and checked."""
    window = ConfigWindow(client, runner=runner, refresh_ms=0)
    qtbot.addWidget(window)
    page: PipelineEditor = window.pipeline
    window.tabs.setCurrentWidget(page)
    with qtbot.waitSignal(page.loaded, timeout=WAIT_MS) as loaded:
        window.show()  # the repository's configs/pipeline.yaml is beside the tests: not opened
    if loaded.args[0] is not None:
        qtbot.waitUntil(lambda: not page.status.text().startswith("Validating"), timeout=WAIT_MS)
    return window


@pytest.mark.integration
def test_the_tab_opens_the_active_version_validates_it_on_the_api_and_draws_it(
    qtbot: QtBot, client: ApiClient, runner: Runner
) -> None:
    older = client.create_pipeline(RUNNING.replace("- name: embedding", "- name: old"))
    active = client.create_pipeline(RUNNING, activate=True)

    window = _opened(qtbot, client, runner)
    page = window.pipeline
    qtbot.waitUntil(lambda: page.status.text().startswith("Valid on the API"), timeout=WAIT_MS)

    assert page.editor.text() == RUNNING and "car_make" not in page.editor.text()
    assert page.editor.highlighted_lines() == []  # no model error greets the operator
    assert f"#{active.id} · active" in page.versions.currentText()
    assert page.versions.count() >= 2 and older.id != active.id
    assert sorted(page.dag.boxes) == [
        "embedding",
        "object_detection",
        "vehicle_type_classification",
    ]
    assert sorted(page.dag.arrows) == [
        ("object_detection", "embedding"),
        ("object_detection", "vehicle_type_classification"),
    ]
    assert page.dag.condition_of("vehicle_type_classification") == (
        "'car' or 'bus' in object_detection.detected_classes"
    )
    detection, vehicle = page.dag.boxes["object_detection"], page.dag.boxes["embedding"]
    assert vehicle.top() > detection.bottom()  # a dependant is drawn below its dependency


@pytest.mark.integration
def test_the_drawing_follows_the_text_and_keeps_the_last_good_one(
    qtbot: QtBot, client: ApiClient, runner: Runner
) -> None:
    client.create_pipeline(RUNNING, activate=True)
    window = _opened(qtbot, client, runner)
    page = window.pipeline
    end = page.editor.text_edit.textCursor()
    end.movePosition(end.MoveOperation.End)
    page.editor.text_edit.setTextCursor(end)
    page.editor.text_edit.setFocus()

    for line in ("  - name: ocr", "    class: echo", "    depends_on: embedding"):
        qtbot.keyClicks(page.editor.text_edit, line)  # type: ignore[no-untyped-call]
        qtbot.keyClick(page.editor.text_edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]

    qtbot.waitUntil(lambda: "ocr" in page.dag.boxes, timeout=WAIT_MS)
    assert ("embedding", "ocr") in page.dag.arrows
    assert page.dag.condition_of("ocr") == ""

    qtbot.keyClicks(page.editor.text_edit, "  - [")  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: "not updated" in page.dag_status.text(), timeout=WAIT_MS)
    assert "ocr" in page.dag.boxes  # the last drawing stays


@pytest.mark.integration
def test_the_page_validates_with_the_api_and_publishes_the_active_version(
    qtbot: QtBot, client: ApiClient, runner: Runner
) -> None:
    window = _opened(qtbot, client, runner)
    page = window.pipeline
    publish = page.publish_button
    assert publish is not None
    page.editor.set_text(BROKEN)

    with qtbot.waitSignal(page.validated, timeout=WAIT_MS) as answer:
        qtbot.mouseClick(page.validate_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    assert [(i.line, i.field) for i in answer.args[0]] == [(8, "pipeline.1.depends_on.1")]
    assert page.editor.highlighted_lines() == [8]
    assert "unknown node 'ghost'" in page.editor.messages_at(8)[0]

    with qtbot.waitSignal(page.validated, timeout=WAIT_MS):
        qtbot.mouseClick(publish, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    assert page.status.text().startswith("Not published")
    assert client.pipelines(name="desk") == []

    # a valid text is stored, replayed (nothing stored to replay against here), then activated
    page.editor.set_text(GOOD)
    qtbot.mouseClick(publish, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: page.replay_dialog is not None, timeout=WAIT_MS)
    dialog = page.replay_dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.activate_button.isEnabled, timeout=WAIT_MS)
    assert "No stored crops to replay against" in dialog.status.text()
    assert [v.active for v in client.pipelines(name="desk")] == [False], "stored, not active"
    with qtbot.waitSignal(page.published, timeout=WAIT_MS) as done:
        qtbot.mouseClick(dialog.activate_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    version: PipelineVersion = done.args[0]
    assert page.editor.highlighted_lines() == []
    assert f"version {version.id} (active)" in page.status.text()
    assert client.pipelines(name="desk", active=True) == [version]
    assert version.name == "desk" and version.yaml == GOOD and version.active
    shown = f"desk #{version.id} · active"
    qtbot.waitUntil(lambda: any(item.startswith(shown) for item in _items(page)), timeout=WAIT_MS)


def test_without_an_api_the_page_has_no_publish_button(qtbot: QtBot) -> None:
    page = PipelineEditor()
    qtbot.addWidget(page)

    assert page.publish_button is None
    with qtbot.waitSignal(page.failed, timeout=WAIT_MS) as answer:
        page.publish()
    assert "Not connected" in answer.args[0]


def test_nodes_are_layered_below_their_deepest_dependency() -> None:
    nodes = dag_nodes(
        GOOD
        + "  - name: late\n    class: echo\n    depends_on: [shirt, object_detection]\n"
        + "  - name: loner\n    class: echo\n    enabled: false\n"
    )

    assert [[n.name for n in row] for row in layers(nodes)] == [
        ["object_detection", "loner"],
        ["shirt"],
        ["late"],
    ]
    assert not next(n for n in nodes if n.name == "loner").enabled


def _items(page: PipelineEditor) -> list[str]:
    return [page.versions.itemText(i) for i in range(page.versions.count())]
