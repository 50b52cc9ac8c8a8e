"""The pipeline DAG page against a real API process: validate there, publish a version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from lensflow.desktop.client import ApiClient
from lensflow.desktop.client_pipelines import PipelineVersion
from lensflow.desktop.config_window import ConfigWindow
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


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApi]:
    with ReviewApi(tmp_path_factory.mktemp("pipeline-api"), search=False) as served:
        yield served


@pytest.fixture
def client(api: ReviewApi) -> Iterator[ApiClient]:
    with ApiClient(api.base_url, key=api.tokens["operator"]) as connected:
        yield connected


@pytest.mark.integration
def test_the_page_validates_with_the_api_and_publishes_the_active_version(
    qtbot: QtBot, client: ApiClient
) -> None:
    window = ConfigWindow(client, runner=Runner(threads=1), pipeline_path=None, refresh_ms=0)
    qtbot.addWidget(window)
    page: PipelineEditor = window.pipeline
    validate, publish = page.remote_buttons
    page.editor.set_text(BROKEN)

    with qtbot.waitSignal(page.validated, timeout=WAIT_MS) as answer:
        qtbot.mouseClick(validate, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    assert [(i.line, i.field) for i in answer.args[0]] == [(8, "pipeline.1.depends_on.1")]
    assert page.editor.highlighted_lines() == [8]
    assert "unknown node 'ghost'" in page.editor.messages_at(8)[0]

    with qtbot.waitSignal(page.validated, timeout=WAIT_MS):
        qtbot.mouseClick(publish, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    assert page.status.text().startswith("Not published") and client.pipelines() == []

    page.editor.set_text(GOOD)
    with qtbot.waitSignal(page.published, timeout=WAIT_MS) as done:
        qtbot.mouseClick(publish, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]

    version: PipelineVersion = done.args[0]
    assert page.editor.highlighted_lines() == []
    assert f"version {version.id} (active)" in page.status.text()
    assert client.pipelines(active=True) == [version]
    assert version.name == "desk" and version.yaml == GOOD and version.active


def test_without_an_api_the_page_has_no_remote_buttons(qtbot: QtBot) -> None:
    page = PipelineEditor()
    qtbot.addWidget(page)

    assert page.remote_buttons == []
    with qtbot.waitSignal(page.failed, timeout=WAIT_MS) as answer:
        page.publish()
    assert "Not connected" in answer.args[0]
