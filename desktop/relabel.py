"""Decisions from the keyboard: number keys, accept, reject, unsure, relabel, and undo.

A decision is about the selected crops and one node (the relabel bar's): a review *status*
(A accepted, R rejected: a wrong detection, U unsure: skipped for now; ``POST /v1/reviews``)
or a relabel to a label of the node's schema (1-9, L; ``POST /v1/labels``). "Rejected" and
"unsure" are statuses, never classes. Each decision goes through the
:class:`~lensflow.desktop.save_queue.SaveQueue` (in order, retried until the API has it); its
rows are patched from the audit trail's events once stored, and it becomes one undo step.
Ctrl+Z takes back a decision not sent yet, else undoes the last stored step through
``POST /v1/labels/undo`` (labels and statuses restored), in the queue's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from lensflow.desktop.api_review_types import DecisionStatus, ReviewBatch
from lensflow.desktop.api_types import DETECTION_NODE, ResultItem
from lensflow.desktop.client import ApiClient
from lensflow.desktop.errors import ApiError
from lensflow.desktop.label_schemas import SchemaBook
from lensflow.desktop.models import ResultsModel
from lensflow.desktop.save_queue import Decision, SaveQueue

Selection = Callable[[], Sequence[ResultItem]]
VERBS: dict[DecisionStatus, str] = {
    "accepted": "Accepted",
    "rejected": "Rejected",
    "unsure": "Marked unsure",
}


@dataclass(frozen=True)
class UndoStep:
    """One stored decision, as Ctrl+Z reverts it: its batches and crops."""

    batch_ids: tuple[str, ...]
    crop_ids: tuple[str, ...]


class RelabelController(QObject):
    """Turns keys into decisions on the selection, and keeps the session's undo steps.

    Signals:
        message(str): Something done, for the status bar.
        failed(object): An :class:`~lensflow.desktop.errors.ApiError` to show.
        decided(object): A :class:`Decision` the API stored (rows already patched).
        refused(object, object): A decision the API refused, and why.
        node_changed(str): The node the keys act on.

    """

    message = Signal(str)
    failed = Signal(object)
    decided = Signal(object)
    refused = Signal(object, object)
    node_changed = Signal(str)

    def __init__(
        self,
        model: ResultsModel,
        selection: Selection,
        *,
        schemas: SchemaBook,
        queue: SaveQueue,
    ) -> None:
        """Decide on ``selection()`` of ``model``.

        Args:
            model: The rows to patch with each stored batch's events.
            selection: The selected results (in view order).
            schemas: The label schemas (the number keys).
            queue: Where decisions go to be stored.

        """
        super().__init__(model)
        self.model = model
        self.selection = selection
        self.schemas = schemas
        self.queue = queue
        self.client: ApiClient | None = None
        self.node = DETECTION_NODE
        self.undo_stack: list[UndoStep] = []
        self._undo_after_flight = 0
        queue.saved.connect(self._stored)
        queue.refused.connect(self._refused)

    # -- the node ------------------------------------------------------------------------------

    def set_node(self, node: str) -> None:
        """Decide about ``node`` (``detection`` or a classifier node) from now on."""
        self.node = node or DETECTION_NODE
        self.model.set_label_node(self.node)
        self.schemas.ensure(self.node)
        self.node_changed.emit(self.node)

    # -- decisions -----------------------------------------------------------------------------

    def number_key(self, number: int) -> Decision | None:
        """Set the label of number key ``number`` (1-9) of the node's schema on the selection."""
        label = self.schemas.key_label(self.node, str(number))
        if label is None:
            known = self.schemas.schema(self.node) is not None
            why = "no label has this key" if known else "its labels are still loading"
            self.message.emit(f"Key {number} sets nothing for {self.node}: {why}.")
            return None
        return self.relabel_selection(label.name)

    def relabel_selection(self, label: str) -> Decision | None:
        """Set ``label`` on every selected crop (one decision, one undo step)."""
        items = self.selection()
        if not items:
            self.message.emit("Select a crop first.")
            return None
        return self.relabel([item.crop_id for item in items], label=label)

    def relabel(self, crop_ids: Sequence[str], *, label: str) -> Decision | None:
        """Set ``label``, a label of the node's schema, on ``crop_ids`` (one undo step)."""
        if (
            self.schemas.schema(self.node) is not None
            and self.schemas.label(self.node, label) is None
        ):
            self.message.emit(f"'{label}' is not a label of {self.node}: pick one of its labels.")
            return None
        return self._decide(
            Decision("label", tuple(dict.fromkeys(crop_ids)), self.node, label=label)
        )

    def review(self, status: DecisionStatus) -> Decision | None:
        """Set a review status on the selection: accepted, rejected or unsure."""
        items = self.selection()
        if not items:
            self.message.emit("Select a crop first.")
            return None
        ids = tuple(dict.fromkeys(item.crop_id for item in items))
        return self._decide(Decision("status", ids, self.node, status=status))

    def accept(self) -> Decision | None:
        """The model's label of the node is right (status ``accepted``)."""
        return self.review("accepted")

    def reject(self) -> Decision | None:
        """A wrong detection, not an object of any class (status ``rejected``)."""
        return self.review("rejected")

    def unsure(self) -> Decision | None:
        """Skip for now (status ``unsure``)."""
        return self.review("unsure")

    def undo(self) -> None:
        """Take back the last decision not sent yet, else undo the last stored step."""
        taken = self.queue.take_last()
        if taken is not None:
            self.message.emit(f"Not saved, taken back: {taken.describe()}.")
            return
        in_flight = self.queue.in_flight()
        if in_flight is not None and in_flight.kind != "undo":
            self._undo_after_flight += 1  # undone as soon as the API has stored it
            return
        if not self.undo_stack:
            self.message.emit("Nothing to undo in this session.")
            return
        self._push_undo(self.undo_stack.pop())

    def add_step(self, batches: Sequence[ReviewBatch], *, what: str) -> None:
        """A decision stored outside the queue (a bulk relabel): patch rows, one undo step."""
        self._apply(batches)
        ids = tuple(dict.fromkeys(e.crop_id for batch in batches for e in batch.events))
        self.undo_stack.append(UndoStep(tuple(b.batch_id for b in batches), ids))
        self.message.emit(f"{what}. Ctrl+Z undoes.")

    # -- plumbing ------------------------------------------------------------------------------

    def _decide(self, decision: Decision) -> Decision | None:
        if self.queue.client() is None:
            self.failed.emit(ApiError("Not connected: use File > Connect first."))
            return None
        self.queue.push(decision)
        return decision

    def _push_undo(self, step: UndoStep) -> None:
        undo = Decision("undo", step.crop_ids, self.node, undo=tuple(reversed(step.batch_ids)))
        self.queue.push(undo)

    def _apply(self, batches: Sequence[ReviewBatch]) -> None:
        for batch in batches:
            self.model.apply_events(batch.events)

    def _stored(self, decision: Decision, batches: list[ReviewBatch]) -> None:
        self._apply(batches)
        changed = sum(batch.changed for batch in batches)
        if decision.kind == "undo":
            self.message.emit(f"Undone: {changed} change(s) of labels or statuses reverted.")
        else:
            step = UndoStep(tuple(b.batch_id for b in batches), decision.crop_ids)
            self.undo_stack.append(step)
            same = sum(batch.unchanged for batch in batches)
            extra = f", {same} already so" if same else ""
            text = decision.describe()
            self.message.emit(
                f"{text[0].upper()}{text[1:]} ({changed} changed{extra}). Ctrl+Z undoes."
            )
            if self._undo_after_flight:
                self._undo_after_flight -= 1
                self._push_undo(self.undo_stack.pop())
        self.decided.emit(decision)

    def _refused(self, decision: Decision, err: object) -> None:
        if decision.kind != "undo":
            self._undo_after_flight = 0
        self.refused.emit(decision, err)
        self.failed.emit(err)
