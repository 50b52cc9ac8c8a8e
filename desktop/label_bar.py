"""The relabel bar: the node the keys act on, its labels on the number keys, the status keys.

Each number key's button shows its label of the node's schema in the label's colour; the
keys stay where they were first shown for the whole session (:mod:`lensflow.desktop.label_schemas`).
The status keys (A accept, R reject, U unsure) and L, N, Ctrl+Z have buttons too, and a note
(:attr:`LabelBar.pending`, shown in the window's status bar) counts the decisions the API has
not stored yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QWidget

from lensflow.desktop.api_types import DETECTION_NODE
from lensflow.desktop.label_schemas import KEYS, SchemaBook

Button = tuple[str, str, Callable[[], object]]
"""``(text, tooltip, what it does)`` of a status or command button."""
_SWATCH = 12


def swatch(color: str) -> QIcon:
    """A small square of ``color`` (``#rrggbb``), the label's colour on its key."""
    pixmap = QPixmap(_SWATCH, _SWATCH)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class LabelBar(QWidget):
    """Node choice, one button per number key, the status and command buttons."""

    def __init__(
        self,
        schemas: SchemaBook,
        *,
        on_key: Callable[[int], object],
        on_node: Callable[[str], object],
        buttons: Sequence[Button],
        parent: QWidget | None = None,
    ) -> None:
        """Buttons that do what the keys do.

        Args:
            schemas: Where the keys' labels come from.
            on_key: Called with a number key's number when its button is clicked.
            on_node: Called with the node chosen.
            buttons: The status and command buttons after the number keys.
            parent: The Qt parent.

        """
        super().__init__(parent)
        self.schemas = schemas
        self.node = QComboBox()
        self.node.addItem(DETECTION_NODE)
        self.node.setToolTip("Which node the keys decide about: the edge detection or a classifier")
        self.node.currentTextChanged.connect(on_node)
        self.keys: list[QToolButton] = []
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        row.addWidget(QLabel("Review"))
        row.addWidget(self.node)
        for number, key in enumerate(KEYS, start=1):
            button = _button(key)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, n=number: on_key(n))
            button.hide()
            self.keys.append(button)
            row.addWidget(button)
        self.commands: dict[str, QToolButton] = {}
        for text, tip, action in buttons:
            button = _button(text)
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, act=action: act())
            self.commands[text] = button
            row.addWidget(button)
        row.addStretch(1)
        self.pending = QLabel("")  # the window shows it in its status bar (room for the keys)
        schemas.changed.connect(self._schema_changed)

    def current_node(self) -> str:
        """The node the keys decide about."""
        return self.node.currentText() or DETECTION_NODE

    def show_keys(self) -> None:
        """Show the label of each number key of the current node, in its colour."""
        keys = self.schemas.keys(self.current_node())
        for key, button in zip(KEYS, self.keys, strict=True):
            label = keys.get(key)
            if label is None:
                button.hide()
                continue
            button.setText(f"{key} {label.name}")
            button.setIcon(swatch(label.color))
            button.setToolTip(f"Key {key}: relabel as '{label.name}' (class id {label.id})")
            button.show()

    def set_nodes(self, nodes: Sequence[str]) -> None:
        """Offer these nodes too (``detection`` stays first)."""
        known = {self.node.itemText(i) for i in range(self.node.count())}
        for node in nodes:
            if node not in known:
                self.node.addItem(node)
                known.add(node)

    def set_pending(self, count: int, *, failing: bool) -> None:
        """Say how many decisions wait to be stored (none: nothing shown)."""
        if count == 0:
            self.pending.setText("")
            return
        why = "the API does not answer, retrying" if failing else "saving"
        self.pending.setText(f"{count} unsaved decision(s): {why}")

    def _schema_changed(self, node: str) -> None:
        if node == self.current_node():
            self.show_keys()


def _button(text: str) -> QToolButton:
    """A compact button (a tool button: no 80-pixel minimum) showing its icon beside its text."""
    button = QToolButton()
    button.setText(text)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    return button
