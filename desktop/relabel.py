"""Relabelling from the keyboard: number keys, accept, reject, bulk, "all similar", and undo.

Every change goes through the API (``POST /v1/labels``: an audited batch) on the runner;
the rows are patched from the batch's events when it returns. Each action is one undo step,
even when it took several batches (a selection over the API's 1,000 crops per batch, or an
accept of crops with different labels); Ctrl+Z undoes the last step through
``POST /v1/labels/undo``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from lensflow.desktop.api_types import DETECTION_NODE, LabelBatch, ResultItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.errors import ApiError, ApiUnreachable
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.workers import Runner

REJECT_LABEL = "rejected"
"""The label the reject key sets: the detection (or classifier output) is wrong."""
MAX_BATCH = 1000
"""Crops per relabel request (the API's limit)."""
SHORTCUT_COUNT = 9
Selection = Callable[[], list[ResultItem]]


class RelabelController(QObject):
    """Relabel the selected crops and undo, through the API, off the UI thread.

    Signals:
        message(str): Something done, for the status bar.
        failed(object): An :class:`~lensflow.desktop.errors.ApiError` (or other exception) to show.
        relabelled(int): A relabel of this many crops finished (the view may move on).
        shortcuts_changed(list): The labels the number keys now set, in key order.

    """

    message = Signal(str)
    failed = Signal(object)
    relabelled = Signal(int)
    shortcuts_changed = Signal(list)

    def __init__(self, runner: Runner, model: ResultsModel, selection: Selection) -> None:
        """Act on ``selection()`` of ``model`` with ``runner``.

        Args:
            runner: Runs the API calls off the UI thread.
            model: The rows to patch with each batch's events.
            selection: The selected results (in view order).

        """
        super().__init__(model)
        self.runner = runner
        self.model = model
        self.selection = selection
        self.client: ApiClient | None = None
        self.node = DETECTION_NODE
        self.shortcuts: list[str] = []
        self.undo_stack: list[list[str]] = []
        self.busy = 0

    # -- what the keys set --------------------------------------------------------------------

    def refresh_shortcuts(self) -> None:
        """Add the node's most common loaded labels to the number keys.

        A key keeps its label for the session (muscle memory beats a perfect ranking);
        new labels fill the free keys, most common first.
        """
        top = self.model.top_labels(self.node, count=SHORTCUT_COUNT)
        labels = self.shortcuts + [label for label in top if label not in self.shortcuts]
        if labels[:SHORTCUT_COUNT] != self.shortcuts:
            self.shortcuts = labels[:SHORTCUT_COUNT]
            self.shortcuts_changed.emit(list(self.shortcuts))

    def set_node(self, node: str) -> None:
        """Relabel ``node`` (``detection`` or a classifier node) from now on."""
        self.node = node or DETECTION_NODE
        self.model.set_label_node(self.node)
        self.shortcuts = []
        self.refresh_shortcuts()

    # -- actions ------------------------------------------------------------------------------

    def number_key(self, number: int) -> None:
        """Set the label of number key ``number`` (1-9) on the selection."""
        if not 1 <= number <= len(self.shortcuts):
            self.message.emit(f"No label on key {number} yet (labels come from the loaded rows).")
            return
        self.relabel_selection(self.shortcuts[number - 1])

    def relabel_selection(self, label: str) -> None:
        """Set ``label`` on every selected crop (one undo step)."""
        items = self.selection()
        if not items:
            self.message.emit("Select a crop first.")
            return
        self.relabel([item.crop_id for item in items], label=label)

    def accept(self) -> None:
        """Confirm the model's label of the node (edge class, or classifier label) as correct."""
        groups: dict[str, list[str]] = defaultdict(list)
        for item in self.selection():
            label = _model_label(item, self.node)
            if label is not None:
                groups[label].append(item.crop_id)
        if not groups:
            self.message.emit("Nothing to accept: select crops that have a label.")
            return
        self._submit(groups, verb="Accepted")

    def reject(self) -> None:
        """Mark the selection as wrong (label ``rejected``)."""
        self.relabel_selection(REJECT_LABEL)

    def relabel(self, crop_ids: Sequence[str], *, label: str) -> None:
        """Set ``label`` on ``crop_ids`` (one undo step, batches of up to 1,000)."""
        label = label.strip()
        if not label:
            self.message.emit("A label cannot be empty.")
            return
        self._submit({label: list(dict.fromkeys(crop_ids))}, verb="Relabelled")

    def undo(self) -> None:
        """Undo the last relabel step through the API's undo."""
        client = self._client()
        if client is None:
            return
        if not self.undo_stack:
            self.message.emit("Nothing to undo in this session.")
            return
        step = self.undo_stack.pop()
        self.busy += 1
        self.runner.submit(
            lambda: [client.undo(batch_id) for batch_id in reversed(step)],
            on_done=lambda batches: self._undone(batches),
            on_error=lambda err: self._undo_failed(err, step),
            name="undo",
            priority=2000,
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _client(self) -> ApiClient | None:
        if self.client is None:
            self.failed.emit(ApiError("Not connected: use File > Connect first."))
        return self.client

    def _submit(self, groups: dict[str, list[str]], *, verb: str) -> None:
        client = self._client()
        if client is None:
            return
        node = self.node

        def run() -> list[LabelBatch]:
            batches = []
            for label, ids in groups.items():
                for start in range(0, len(ids), MAX_BATCH):
                    chunk = ids[start : start + MAX_BATCH]
                    batches.append(client.relabel(chunk, label=label, node=node))
            return batches

        self.busy += 1
        count = sum(len(ids) for ids in groups.values())
        labels = ", ".join(f"'{label}'" for label in groups)
        self.runner.submit(
            run,
            on_done=lambda batches: self._done(batches, f"{verb} {count} crop(s) as {labels}"),
            on_error=self._relabel_failed,
            name="relabel",
            priority=2000,
        )

    def _done(self, batches: list[LabelBatch], what: str) -> None:
        self.busy -= 1
        for batch in batches:
            self.model.apply_events(batch.events)
        changed = sum(batch.changed for batch in batches)
        self.undo_stack.append([batch.batch_id for batch in batches])
        same = sum(batch.unchanged for batch in batches)
        extra = f", {same} already had it" if same else ""
        self.message.emit(f"{what} ({changed} changed{extra}). Ctrl+Z undoes.")
        self.relabelled.emit(changed + same)
        self.refresh_shortcuts()

    def _relabel_failed(self, err: Exception) -> None:
        self.busy -= 1
        self.failed.emit(err)

    def _undone(self, batches: list[LabelBatch]) -> None:
        self.busy -= 1
        for batch in batches:
            self.model.apply_events(batch.events)
        changed = sum(batch.changed for batch in batches)
        self.message.emit(f"Undone: {changed} label change(s) reverted.")

    def _undo_failed(self, err: Exception, step: list[str]) -> None:
        self.busy -= 1
        if isinstance(err, ApiUnreachable):
            self.undo_stack.append(step)  # nothing happened: Ctrl+Z may be tried again
        self.failed.emit(err)


def _model_label(item: ResultItem, node: str) -> str | None:
    """What the edge (``detection``) or the classifier said, ignoring human labels."""
    if node == DETECTION_NODE:
        return item.detection.class_name
    outcome = item.classifiers.get(node)
    return outcome.label if outcome else None


class LabelBar(QWidget):
    """The relabel strip: node choice, one button per number key, accept, reject, undo."""

    def __init__(self, controller: RelabelController, parent: QWidget | None = None) -> None:
        """Buttons that do what the keys do (and show which label each number sets)."""
        super().__init__(parent)
        self.controller = controller
        self.node = QComboBox()
        self.node.addItem(DETECTION_NODE)
        self.node.setToolTip("Which label the keys set: the edge detection's or a classifier's")
        self.node.currentTextChanged.connect(controller.set_node)
        self.buttons: list[QPushButton] = []
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(6, 2, 6, 2)
        self._row.addWidget(QLabel("Relabel"))
        self._row.addWidget(self.node)
        for number in range(1, SHORTCUT_COUNT + 1):
            button = QPushButton(f"{number}")
            button.setFocusPolicy(button.focusPolicy().NoFocus)
            button.clicked.connect(lambda _=False, n=number: controller.number_key(n))
            button.hide()
            self.buttons.append(button)
            self._row.addWidget(button)
        for text, action in (
            ("A accept", controller.accept),
            ("R reject", controller.reject),
            ("Ctrl+Z undo", controller.undo),
        ):
            button = QPushButton(text)
            button.setFocusPolicy(button.focusPolicy().NoFocus)
            button.clicked.connect(action)
            self._row.addWidget(button)
        self._row.addStretch(1)
        controller.shortcuts_changed.connect(self.show_shortcuts)

    def show_shortcuts(self, labels: list[str]) -> None:
        """Show the label each number key sets."""
        for number, button in enumerate(self.buttons, start=1):
            if number <= len(labels):
                button.setText(f"{number} {labels[number - 1]}")
                button.show()
            else:
                button.hide()

    def set_nodes(self, nodes: Sequence[str]) -> None:
        """Offer these nodes (``detection`` first)."""
        current = self.node.currentText()
        known = [self.node.itemText(i) for i in range(self.node.count())]
        for node in nodes:
            if node not in known:
                self.node.addItem(node)
        self.node.setCurrentText(current)
