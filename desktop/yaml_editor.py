"""A YAML text editor that shows config problems at their lines.

Each issue's line gets a tinted background and its message as the line's tooltip; the list
under the text names every issue, and activating one moves the cursor to its line. Issues
without a line (a size limit, an API refusal) are listed without a place.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase, QHelpEvent, QTextCursor, QTextFormat
from PySide6.QtWidgets import (
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QSplitter,
    QTextEdit,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_types import ConfigIssue
from lensflow.desktop.theme import issue_background


class YamlEditor(QWidget):
    """A monospace text editor with an issue list; issues highlight their lines.

    Signals:
        text_edited: The text changed (by the user or :meth:`set_text`).

    """

    text_edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build the editor and its issue list."""
        super().__init__(parent)
        self.text_edit = QPlainTextEdit()
        self.text_edit.setObjectName("yamlText")
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.text_edit.setFont(font)
        self.text_edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text_edit.setTabChangesFocus(False)
        self.text_edit.viewport().installEventFilter(self)
        self.issue_list = QListWidget()
        self.issue_list.setObjectName("yamlIssues")
        self.issue_list.itemActivated.connect(self._go_to_issue)
        self.issue_list.itemClicked.connect(self._go_to_issue)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.text_edit)
        splitter.addWidget(self.issue_list)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._issues: list[ConfigIssue] = []
        self.text_edit.textChanged.connect(self.text_edited)

    def text(self) -> str:
        """The text as edited."""
        return self.text_edit.toPlainText()

    def set_text(self, text: str) -> None:
        """Replace the text and clear the issues."""
        self.text_edit.setPlainText(text)
        self.set_issues([])

    def issues(self) -> list[ConfigIssue]:
        """The issues shown."""
        return list(self._issues)

    def set_issues(self, issues: Sequence[ConfigIssue]) -> None:
        """Show ``issues``: tint their lines, list them; an empty list clears both."""
        self._issues = list(issues)
        self.issue_list.clear()
        selections: list[QTextEdit.ExtraSelection] = []
        document = self.text_edit.document()
        for issue in self._issues:
            item = QListWidgetItem(str(issue))
            item.setData(Qt.ItemDataRole.UserRole, issue.line)
            self.issue_list.addItem(item)
            if issue.line is None or not 1 <= issue.line <= document.blockCount():
                continue
            selection = QTextEdit.ExtraSelection()
            selection.format.setBackground(issue_background())
            selection.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
            cursor = QTextCursor(document.findBlockByNumber(issue.line - 1))
            selection.cursor = cursor
            selections.append(selection)
        self.text_edit.setExtraSelections(selections)

    def highlighted_lines(self) -> list[int]:
        """The 1-based lines tinted as having a problem, in order."""
        lines = {s.cursor.blockNumber() + 1 for s in self.text_edit.extraSelections()}
        return sorted(lines)

    def messages_at(self, line: int) -> list[str]:
        """The messages of the issues at a 1-based line."""
        return [
            f"{issue.field}: {issue.message}" if issue.field else issue.message
            for issue in self._issues
            if issue.line == line
        ]

    def go_to_line(self, line: int) -> None:
        """Put the cursor at the start of a 1-based line and show it."""
        block = self.text_edit.document().findBlockByNumber(max(0, line - 1))
        if block.isValid():
            self.text_edit.setTextCursor(QTextCursor(block))
            self.text_edit.centerCursor()
            self.text_edit.setFocus()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        """Show the messages of a tinted line as its tooltip."""
        if watched is self.text_edit.viewport() and event.type() == QEvent.Type.ToolTip:
            assert isinstance(event, QHelpEvent)
            cursor = self.text_edit.cursorForPosition(event.pos())
            messages = self.messages_at(cursor.blockNumber() + 1)
            if messages:
                QToolTip.showText(event.globalPos(), "\n".join(messages), self.text_edit)
            else:
                QToolTip.hideText()
            return True
        return super().eventFilter(watched, event)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        """Tint the problem lines again for a new palette (light or dark)."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._issues:
            self.set_issues(self._issues)

    def _go_to_issue(self, item: QListWidgetItem) -> None:
        line = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(line, int):
            self.go_to_line(line)
