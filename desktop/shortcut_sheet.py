"""The shortcut sheet (``?``): every key the review window has, read from the window itself.

The sheet is built when it opens, from the window's actions (grouped by the menu that holds
them, with their shortcuts) and its stand-alone shortcuts (the number keys: described by
their ``whatsThis`` when set), plus the keys the views handle themselves (moving in the grid
or table, selecting several). A key added to the window later is on the sheet without any
change here.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMenu, QTextBrowser, QVBoxLayout, QWidget

VIEW_KEYS = (
    ("Arrow keys, Page Up/Down, Home, End", "Move in the grid or the table"),
    ("Shift+click, Shift+arrows", "Select a range of crops"),
    ("Ctrl+click", "Add a crop to the selection, or take it out"),
    ("Ctrl+A", "Select every loaded crop"),
    ("Enter (in a filter)", "Apply the filters now"),
    ("Esc", "Close a dialog or this sheet"),
)
"""Keys the views and dialogs handle themselves (no action of the window)."""
_NATIVE = QKeySequence.SequenceFormat.NativeText


@dataclass(frozen=True)
class KeyRow:
    """One line of the sheet: the keys, what they do, and the group it is listed under."""

    keys: str
    does: str
    group: str


def shortcut_rows(window: QWidget) -> list[KeyRow]:
    """Every key of ``window``: its actions by menu, its other shortcuts, the view keys."""
    rows = [row for action in window.actions() if (row := _action_row(action)) is not None]
    rows += _shortcut_rows(window.findChildren(QShortcut))
    rows += [KeyRow(keys, does, "Moving and selecting") for keys, does in VIEW_KEYS]
    return rows


def _action_row(action: QAction) -> KeyRow | None:
    keys = [sequence.toString(_NATIVE) for sequence in action.shortcuts() if not sequence.isEmpty()]
    if not keys:
        return None
    menus = [m for m in action.associatedObjects() if isinstance(m, QMenu)]
    group = menus[0].title().replace("&", "") if menus else "Window"
    does = action.statusTip() or action.text().replace("&", "").rstrip("…")
    return KeyRow(" or ".join(keys), does, group)


def _shortcut_rows(shortcuts: Iterable[QShortcut]) -> list[KeyRow]:
    """Stand-alone shortcuts; a run of single digits with one meaning is one row (1 … 9)."""
    rows: list[KeyRow] = []
    digits: list[str] = []
    for shortcut in shortcuts:
        key = shortcut.key().toString(_NATIVE)
        if not key or not shortcut.isEnabled():
            continue
        described = shortcut.whatsThis()
        if key.isdigit() and len(key) == 1 and not described:
            digits.append(key)
            continue
        rows.append(KeyRow(key, described or "(no description)", "Labels"))
    if digits:
        keys = f"{min(digits)} … {max(digits)}" if len(digits) > 1 else digits[0]
        rows.insert(0, KeyRow(keys, "Set the label shown on that key in the relabel bar", "Labels"))
    return rows


def sheet_html(rows: Iterable[KeyRow]) -> str:
    """The rows as HTML tables, one per group, in the order the groups first appear."""
    groups: dict[str, list[KeyRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    parts = []
    for group, members in groups.items():
        parts.append(f"<h4>{html.escape(group)}</h4><table cellspacing=0 cellpadding=3>")
        parts += [
            f"<tr><td width=190><b>{html.escape(row.keys)}</b></td>"
            f"<td>{html.escape(row.does)}</td></tr>"
            for row in members
        ]
        parts.append("</table>")
    return "".join(parts)


class ShortcutSheet(QDialog):
    """A dialog listing every key of a window (see :func:`shortcut_rows`); Esc closes it."""

    def __init__(self, window: QWidget) -> None:
        """The sheet of ``window``, as its keys are now."""
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts")
        self.rows = shortcut_rows(window)
        self.text = QTextBrowser()
        self.text.setHtml(sheet_html(self.rows))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(560, 620)


def show_shortcut_sheet(window: QWidget) -> ShortcutSheet:
    """Open the sheet of ``window`` (not blocking: it returns at once)."""
    sheet = ShortcutSheet(window)
    sheet.open()
    return sheet
