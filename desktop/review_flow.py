"""The keyboard review flow of the main window: keys, advancing, saves, labels and bulk edits.

Number keys 1-9 set the labels of the node's schema (:class:`SchemaBook`: they never move in a
session); A accepts the model's label, R rejects the detection, U marks it unsure: statuses,
not classes. L asks for a label of the schema (:class:`LabelDialog`; a new label only through
its confirmed "Add label…"). Each of these acts on the selection and, on a single crop,
advances to the next row, unless the API is not answering: then the decision is kept (the
crop marked unsaved, retried in order by the :class:`SaveQueue`) and the selection stays,
so the operator sees that nothing moves on until the API has it. N goes to the next crop
without a status of the node. Ctrl+Z undoes through the audit trail and, for one crop, goes
back to it, so a correction is the undo and the right key. "Relabel all similar…"
opens the :class:`SimilarDialog` (threshold, preview by current label, people's decisions
left alone unless asked, one undo step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox, QWidget

from lensflow.desktop.api_review_types import Facets, ReviewItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.errors import ApiError
from lensflow.desktop.label_bar import LabelBar
from lensflow.desktop.label_dialog import LabelDialog
from lensflow.desktop.label_schemas import SchemaBook
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.relabel import RelabelController
from lensflow.desktop.save_queue import Decision, SaveQueue
from lensflow.desktop.similar_dialog import SimilarDialog
from lensflow.desktop.workers import Runner


class FlowHost(Protocol):
    """What the flow needs of its window (the main window provides it)."""

    client: ApiClient | None
    model: ResultsModel
    runner: Runner

    def selected_items(self) -> list[ReviewItem]:
        """The selected rows."""

    def select_row(self, row: int) -> None:
        """Make ``row`` current and the only one selected."""

    def current_row(self) -> int | None:
        """The current row, if any."""

    def show_message(self, text: str) -> None:
        """A passing message."""

    def show_error(self, err: object) -> None:
        """An error shown until cleared."""

    def clear_error(self) -> None:
        """Remove the error line."""


class ReviewFlow(QObject):
    """The session's schemas, save queue, relabel controller and label bar, and the keys."""

    def __init__(self, host: FlowHost, *, parent: QObject, dialog_parent: object) -> None:
        """Serve ``host``'s keys; dialogs open over ``dialog_parent`` (the window)."""
        super().__init__(parent)
        self.host = host
        self.dialog_parent = dialog_parent
        client: Callable[[], ApiClient | None] = lambda: host.client  # noqa: E731
        self.schemas = SchemaBook(host.runner, client, parent=self)
        self.queue = SaveQueue(host.runner, client, parent=self)
        self.relabel = RelabelController(
            host.model, host.selected_items, schemas=self.schemas, queue=self.queue
        )
        self.label_bar = LabelBar(
            self.schemas,
            on_key=self.number_key,
            on_node=self.relabel.set_node,
            buttons=(
                ("A ✓", "Accept: the model's label is right (A)", self.accept),
                ("R ✗", "Reject: not an object of any class, a wrong detection (R)", self.reject),
                ("U ?", "Unsure: skip for now (U)", self.unsure),
                ("L…", "Relabel as a label of the node's schema (L)", self.ask_label),
                ("N →", "Next crop without a review of this node (N)", self.next_unreviewed),
                ("↶", "Undo the last decision (Ctrl+Z)", self.relabel.undo),
            ),
        )
        self.label_dialog: LabelDialog | None = None
        self.similar_dialog: SimilarDialog | None = None
        self._wire()

    def _wire(self) -> None:
        self.relabel.message.connect(self.host.show_message)
        self.relabel.refused.connect(self._refused)
        self.relabel.decided.connect(self._decided)
        self.relabel.node_changed.connect(lambda _node: self.label_bar.show_keys())
        self.schemas.failed.connect(self.host.show_error)
        self.queue.unsaved_changed.connect(self._unsaved_changed)
        self.queue.failing.connect(self._failing)
        self.queue.recovered.connect(self._recovered)
        self.queue.saved.connect(lambda *_: self._pending_changed())
        self.queue.drained.connect(self._pending_changed)

    # -- connection ----------------------------------------------------------------------------

    def connected(self) -> None:
        """A new connection: schemas again, the node's keys, decisions waiting are sent."""
        self.schemas.reset()
        self.schemas.ensure(self.relabel.node)
        self.queue.retry_now()

    def use_facets(self, facets: Facets) -> None:
        """Offer every node the API knows (with results) in the node choice."""
        self.label_bar.set_nodes([facet.value for facet in facets.nodes])

    # -- keys ----------------------------------------------------------------------------------

    def number_key(self, number: int) -> None:
        """Set the label of key ``number`` of the node's schema; advance."""
        self._then_advance(lambda: self.relabel.number_key(number))

    def accept(self) -> None:
        """Accept the model's label of the selection; advance."""
        self._then_advance(self.relabel.accept)

    def reject(self) -> None:
        """Reject the selection's detection (status, not a class); advance."""
        self._then_advance(self.relabel.reject)

    def unsure(self) -> None:
        """Mark the selection unsure; advance."""
        self._then_advance(self.relabel.unsure)

    def ask_label(self) -> LabelDialog | None:
        """L: ask for a label of the node's schema for the selection; advance once set."""
        items = self.host.selected_items()
        if not items:
            self.host.show_message("Select a crop first.")
            return None
        node = self.relabel.node
        if self.schemas.schema(node) is None:
            self.schemas.ensure(node)
            self.host.show_message(f"The labels of {node} are still loading; try L again.")
            return None
        ids = [item.crop_id for item in items]
        dialog = LabelDialog(
            self.schemas,
            node,
            count=len(ids),
            runner=self.host.runner,
            client=lambda: self.host.client,
            parent=self.dialog_parent,  # type: ignore[arg-type]
        )
        dialog.chosen.connect(
            lambda label: self._then_advance(
                lambda: self.relabel.relabel(ids, label=label), items=items
            )
        )
        self.label_dialog = dialog
        dialog.open()
        return dialog

    def ask_similar(self, crop_ids: list[str]) -> SimilarDialog | None:
        """Relabel all similar…: preview and apply a bulk relabel around the first crop."""
        if not crop_ids:
            self.host.show_message("Select a crop first.")
            return None
        node = self.relabel.node
        if self.schemas.schema(node) is None:
            self.schemas.ensure(node)
            self.host.show_message(f"The labels of {node} are still loading; try again.")
            return None
        row = self.host.model.row_of(crop_ids[0])
        current = self.host.model.item(row).label(node) if row is not None else None
        dialog = SimilarDialog(
            self.schemas,
            crop_id=crop_ids[0],
            node=node,
            label=current,
            runner=self.host.runner,
            client=lambda: self.host.client,
            parent=self.dialog_parent,  # type: ignore[arg-type]
        )
        dialog.applied.connect(lambda batch, what: self.relabel.add_step([batch], what=what))
        self.similar_dialog = dialog
        dialog.open()
        dialog.refresh()
        return dialog

    def next_unreviewed(self) -> None:
        """N: the next crop without a review status of the node (loading more if needed)."""
        model = self.host.model
        row = self.host.current_row()
        found = model.next_unreviewed(-1 if row is None else row, self.relabel.node)
        if found is not None:
            self.host.select_row(found)
            return
        if not model.exhausted:
            model.fetchMore()
            self.host.show_message("Every loaded crop is reviewed; loading more…")
        else:
            self.host.show_message(f"Every crop listed has a review of {self.relabel.node}.")

    # -- advancing -----------------------------------------------------------------------------

    def _then_advance(
        self, decide: Callable[[], Decision | None], *, items: list[ReviewItem] | None = None
    ) -> None:
        items = self.host.selected_items() if items is None else items
        decision = decide()
        if decision is None or len(items) != 1:
            return
        if self.queue.failing_now:
            self.host.show_message(
                "Kept, not saved yet: the API does not answer. The list moves on once it does."
            )
            return
        row = self.host.model.row_of(items[0].crop_id)
        if row is not None and row + 1 < self.host.model.rowCount():
            self.host.select_row(row + 1)

    # -- saves ---------------------------------------------------------------------------------

    def _unsaved_changed(self) -> None:
        self.host.model.set_unsaved(self.queue.unsaved())
        self._pending_changed()

    def _pending_changed(self) -> None:
        self.label_bar.set_pending(len(self.queue.pending()), failing=self.queue.failing_now)

    def _failing(self, err: object) -> None:
        count = len(self.queue.pending())
        why = err.message if isinstance(err, ApiError) else str(err)
        self.host.show_error(ApiError(f"Not saved yet ({count} decision(s) kept, retrying): {why}"))
        self._pending_changed()

    def _recovered(self) -> None:
        self.host.clear_error()
        self.host.show_message("The API answers again: saving the decisions kept.")
        self._pending_changed()

    def _decided(self, decision: Decision) -> None:
        """An undo of one crop's decision goes back to that crop, to decide it again."""
        if decision.kind == "undo" and len(decision.crop_ids) == 1:
            row = self.host.model.row_of(decision.crop_ids[0])
            if row is not None:
                self.host.select_row(row)

    def _refused(self, decision: Decision, err: object) -> None:
        """A refused decision: go back to its crop (when it was one) so it can be decided again."""
        if len(decision.crop_ids) == 1:
            row = self.host.model.row_of(decision.crop_ids[0])
            if row is not None:
                self.host.select_row(row)
        self.host.show_error(err)
        self._pending_changed()

    # -- quitting ------------------------------------------------------------------------------

    def may_quit(self, answer: object | None = None) -> bool:
        """Whether to quit: nothing waits to be saved, or the operator says to drop it.

        Args:
            answer: The button to take instead of asking (tests).

        """
        queue = self.queue
        if not queue.pending():
            return True
        queue.retry_now()
        button = QMessageBox.StandardButton
        if answer is None:
            answer = QMessageBox.question(
                self.dialog_parent if isinstance(self.dialog_parent, QWidget) else None,
                "Unsaved decisions",
                f"{len(queue.pending())} decision(s) are not saved yet: the API has not "
                "answered. Quit anyway and lose them?",
                button.Discard | button.Cancel,
                button.Cancel,
            )
        if answer == button.Discard:
            queue.discard()
            return True
        return False
