"""The shortcut sheet on ``?`` and the OS's light or dark scheme, in a window on a served API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.errors import ApiError
from lensflow.desktop.main_window import MainWindow
from lensflow.desktop.shortcut_sheet import ShortcutSheet
from lensflow.desktop.theme import follow_system_theme, is_dark
from lensflow.desktop.yaml_editor import YamlEditor

pytestmark = pytest.mark.integration


def _open_sheet(window: MainWindow, qtbot: QtBot) -> ShortcutSheet:
    qtbot.waitUntil(
        lambda: any(s.isVisible() for s in window.findChildren(ShortcutSheet)), timeout=5_000
    )
    [sheet] = [s for s in window.findChildren(ShortcutSheet) if s.isVisible()]
    return sheet


def test_question_mark_opens_a_sheet_of_every_key_the_window_has(
    window: MainWindow, qtbot: QtBot
) -> None:
    window.grid.setFocus()

    # "?": on a real keyboard Shift+/, which the platform's key mapper also offers as "?"
    qtbot.keyClick(window.grid, Qt.Key.Key_Question)  # type: ignore[no-untyped-call]

    sheet = _open_sheet(window, qtbot)
    listed = {row.keys for row in sheet.rows}
    text = sheet.text.toPlainText()
    for action in window.actions():  # every key of every action, current and future
        for sequence in action.shortcuts():
            key = sequence.toString(sequence.SequenceFormat.NativeText)
            assert any(key in keys for keys in listed), f"{key} ({action.text()}) is not listed"
    assert "1 … 9" in listed  # the number keys, as one row
    assert "Undo" in text and "Keyboard shortcuts" in text and "Next unreviewed" in text
    assert "Move in the grid or the table" in text

    qtbot.keyClick(sheet, Qt.Key.Key_Escape)  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: not sheet.isVisible(), timeout=5_000)


def _tint(editor: YamlEditor) -> QColor:
    """The background of the first problem line."""
    selections = editor.text_edit.extraSelections()
    text_format = selections[0].format
    return QColor(text_format.background().color())


@pytest.fixture
def restored_look(qapp: QApplication) -> Iterator[QApplication]:
    """The application's style and palette put back after the test."""
    style, palette = qapp.style().name(), qapp.palette()
    yield qapp
    qapp.setStyle(style)
    qapp.setPalette(palette)


def test_the_app_follows_the_os_from_light_to_dark_and_back(
    window: MainWindow, qtbot: QtBot, restored_look: QApplication
) -> None:
    app = restored_look
    follow_system_theme(app)
    editor = YamlEditor()
    qtbot.addWidget(editor)
    editor.set_text("a: 1\nb: 2\n")
    editor.set_issues([ConfigIssue(message="bad", line=2)])
    hints = app.styleHints()

    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # the OS switched to dark

    assert is_dark(app.palette())
    qtbot.waitUntil(lambda: is_dark(window.palette()), timeout=5_000)  # a posted palette event
    text = window.palette().color(QPalette.ColorRole.WindowText)
    assert text.lightness() > 180  # light text on the dark window
    tint = _tint(editor)
    assert tint.lightness() < 100  # a problem line stays readable: a dark red, not pink
    window.show_error(ApiError("broken"))
    assert "#ff7b7b" in window.error_label.styleSheet()

    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)  # and back

    assert not is_dark(app.palette())
    qtbot.waitUntil(lambda: not is_dark(editor.palette()), timeout=5_000)
    tint = _tint(editor)
    assert tint.lightness() > 180
