"""L: ask for a label of the node's schema; a new label only through an explicit, confirmed step.

The text field completes with the schema's labels (and nothing else); the list below shows
them with their keys and colours, filtered as you type (arrow keys move in it). Enter takes
the label typed (letter case and surrounding spaces do not matter: ``fall `` is ``Fall``) or
the one highlighted; text that is no label of the schema is refused with a note, and nothing
is sent. "Add label…" asks first, then calls ``POST /v1/label-schemas/{node}/labels``; the API
refuses a near-duplicate (``Fall`` beside ``fall``) with a message shown here, and nothing is
created by a typo.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lensflow.desktop.api_review_types import LabelSchema
from lensflow.desktop.client_reviews import ReviewCalls
from lensflow.desktop.label_bar import swatch
from lensflow.desktop.label_schemas import SchemaBook
from lensflow.desktop.theme import error_color
from lensflow.desktop.workers import Runner

ADD_LABEL = "Add label…"


def resolve(text: str, names: list[str]) -> str | None:
    """The schema label ``text`` means: exactly, else the one equal ignoring case and spaces."""
    typed = text.strip()
    if typed in names:
        return typed
    folded = [name for name in names if name.casefold() == typed.casefold()]
    return folded[0] if len(folded) == 1 else None


class LabelDialog(QDialog):
    """Ask for one label of ``node``'s schema (or add one, confirmed).

    Signals:
        chosen(str): The label, exactly as the schema has it (the dialog then closes).

    """

    chosen = Signal(str)

    def __init__(
        self,
        schemas: SchemaBook,
        node: str,
        *,
        count: int,
        runner: Runner,
        client: Callable[[], ReviewCalls | None],
        parent: QWidget | None = None,
    ) -> None:
        """A dialog for ``count`` crops of ``node``.

        Args:
            schemas: The session's schemas (a label added is given to it).
            node: The node whose label is asked for.
            count: How many crops the label is for.
            runner: Runs the add-label request.
            client: The connection in use.
            parent: The window.

        """
        super().__init__(parent)
        self.setWindowTitle("Relabel")
        self.schemas, self.node, self.runner, self.client = schemas, node, runner, client
        self.names = schemas.names(node)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("Type a label of this node")
        completer = QCompleter(self.names, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.InlineCompletion)
        self.edit.setCompleter(completer)
        self.edit.installEventFilter(self)
        self.list = QListWidget()
        self._fill_list()
        self.note = QLabel("")
        self.note.setWordWrap(True)
        buttons = QDialogButtonBox()
        self.ok = buttons.addButton("Relabel", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add = QPushButton(ADD_LABEL)
        self.add.setAutoDefault(False)
        buttons.addButton(self.add, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.choose)
        buttons.rejected.connect(self.reject)
        self.add.clicked.connect(self.ask_add)
        self.edit.returnPressed.connect(self.choose)
        self.edit.textChanged.connect(self._filter)
        self.list.itemDoubleClicked.connect(
            lambda entry: self._pick(str(entry.data(Qt.ItemDataRole.UserRole)))
        )
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Label for {count} crop(s) of <b>{node}</b>:"))
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.resize(380, 420)

    # -- choosing ------------------------------------------------------------------------------

    def choose(self) -> None:
        """Take the label typed, or the one highlighted; refuse anything else."""
        typed = self.edit.text()
        name = resolve(typed, self.names)
        current = self.list.currentItem()
        if name is None and current is not None and not current.isHidden():
            name = str(current.data(Qt.ItemDataRole.UserRole))
        if name is None:
            shown = typed.strip() or "(nothing)"
            self._say(
                f"'{shown}' is not a label of {self.node}. Choose one of the list, or "
                f"{ADD_LABEL} to create a new one.",
                error=True,
            )
            return
        self._pick(name)

    def _pick(self, name: str) -> None:
        self.chosen.emit(name)
        self.accept()

    # -- adding a label ------------------------------------------------------------------------

    def ask_add(self) -> QMessageBox | None:
        """Ask whether to add the typed text as a new label; adds it if confirmed."""
        name = self.edit.text().strip()
        if not name:
            self._say("Type the new label's name first.", error=True)
            return None
        if name in self.names:
            self._pick(name)
            return None
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Add a label?")
        box.setText(
            f"Add '{name}' to the labels of {self.node}? It becomes a new class for every "
            "operator and every export, and cannot be removed."
        )
        add = box.addButton(f"Add '{name}'", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)  # Enter pressed by habit adds nothing
        box.buttonClicked.connect(lambda button: self._add(name) if button is add else None)
        box.open()
        return box

    def _add(self, name: str) -> None:
        client = self.client()
        if client is None:
            self._say("Not connected.", error=True)
            return
        node = self.node
        self._say(f"Adding '{name}'…")
        self.runner.submit(
            lambda: client.add_label(node, name),
            on_done=lambda schema: self._added(schema, name),
            on_error=lambda err: self._say(getattr(err, "message", str(err)), error=True),
            name="add label",
            priority=2000,
        )

    def _added(self, schema: LabelSchema, name: str) -> None:
        self.schemas.use(schema)
        self.names = schema.names()
        self._pick(resolve(name, self.names) or name)

    # -- plumbing ------------------------------------------------------------------------------

    def _fill_list(self) -> None:
        keys = {label.name: key for key, label in self.schemas.keys(self.node).items()}
        schema = self.schemas.schema(self.node)
        for label in schema.labels if schema is not None else []:
            key = keys.get(label.name)
            entry = QListWidgetItem(swatch(label.color), f"{key or ' '}  {label.name}")
            entry.setData(Qt.ItemDataRole.UserRole, label.name)
            self.list.addItem(entry)

    def _filter(self, text: str) -> None:
        typed = text.strip().casefold()
        first = None
        for row in range(self.list.count()):
            entry = self.list.item(row)
            hidden = typed not in str(entry.data(Qt.ItemDataRole.UserRole)).casefold()
            entry.setHidden(hidden)
            if not hidden and first is None:
                first = entry
        if first is not None:
            self.list.setCurrentItem(first)
        self.note.setText("")

    def _say(self, text: str, *, error: bool = False) -> None:
        color = f"color: {error_color().name()};" if error else ""
        self.note.setStyleSheet(color)
        self.note.setText(text)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        """Up and Down in the text field move in the list."""
        arrows = (Qt.Key.Key_Up, Qt.Key.Key_Down)
        if (
            watched is self.edit
            and isinstance(event, QKeyEvent)
            and event.type() == QEvent.Type.KeyPress
            and event.key() in arrows
        ):
            self._step(-1 if event.key() == Qt.Key.Key_Up else 1)
            return True
        return super().eventFilter(watched, event)

    def _step(self, by: int) -> None:
        rows = [r for r in range(self.list.count()) if not self.list.item(r).isHidden()]
        if not rows:
            return
        current = self.list.currentRow()
        at = rows.index(current) + by if current in rows else 0
        self.list.setCurrentRow(rows[max(0, min(at, len(rows) - 1))])
