"""The main window's menus, built from a table.

Every action has its key and works from anywhere in the window; the ``?`` sheet reads them
back from the window (:mod:`lensflow.desktop.shortcut_sheet`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow

Shortcut = str | QKeySequence.StandardKey | None
Entry = tuple[str, Callable[[], object], Shortcut] | None
"""``(text, slot, shortcut)`` of a menu action; None is a separator."""


def add_menu(window: QMainWindow, title: str, entries: Sequence[Entry]) -> list[QAction]:
    """Add a menu of ``entries`` to ``window``; its actions work from anywhere in the window."""
    menu = window.menuBar().addMenu(title)
    actions = []
    for entry in entries:
        if entry is None:
            menu.addSeparator()
            continue
        text, slot, shortcut = entry
        action = QAction(text, window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        window.addAction(action)
        menu.addAction(action)
        actions.append(action)
    return actions
