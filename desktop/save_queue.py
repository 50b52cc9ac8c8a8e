"""Honest saves: every decision goes to the API in order, and is kept until the API has it.

A :class:`Decision` (a review status, a relabel, or an undo of the last saved step) is queued
and sent at once; one request is in flight at a time, so decisions reach the API in the order
they were made. When a request cannot reach the API (no answer, a timeout, 429, 5xx) the
decision stays at the head of the queue and is retried with backoff (:data:`BACKOFF_S`); the
decisions made meanwhile wait behind it, in order, and their crops are marked unsaved. Nothing
is dropped, reordered or sent twice by the queue. When the API answers again, the queue drains
and says so (:attr:`SaveQueue.recovered`). A refusal (400-409, 422: a label outside the
schema, an undo after a newer change) is not retried: it ends that decision, which is reported
with the API's message, and the next one is sent.

Everything here runs on the UI thread; the requests run on a
:class:`~lensflow.desktop.workers.Runner` and touch no widget.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from PySide6.QtCore import QObject, QTimer, Signal

from lensflow.desktop.api_review_types import DecisionStatus, ReviewBatch
from lensflow.desktop.client_reviews import ReviewCalls
from lensflow.desktop.errors import ApiError, ApiUnreachable
from lensflow.desktop.workers import Runner

logger = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
"""Waits before each retry of a save that did not reach the API; the last one repeats."""
MAX_BATCH = 1000
"""Crops per request (the API's limit): a bigger decision is sent as several batches."""
Kind = Literal["status", "label", "undo"]
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Decision:
    """One thing the operator decided, as the API is asked to store it.

    Attributes:
        kind: ``status`` (accepted, rejected, unsure), ``label`` (a relabel) or ``undo``.
        crop_ids: The crops it is about (an undo: the crops of the step it undoes).
        node: The node (``detection`` for the edge detection).
        status: The status of a ``status`` decision.
        label: The label of a ``label`` decision.
        undo: The batch ids an ``undo`` reverts, last first.
        number: Its place in the session (decisions are stored in this order).

    """

    kind: Kind
    crop_ids: tuple[str, ...]
    node: str
    status: DecisionStatus | None = None
    label: str | None = None
    undo: tuple[str, ...] = ()
    number: int = field(default_factory=lambda: next(_numbers))

    def describe(self) -> str:
        """The decision in a few words, for the status bar."""
        count = f"{len(self.crop_ids)} crop(s)"
        if self.kind == "status":
            return f"{self.status} {count}"
        if self.kind == "label":
            return f"relabelled {count} as '{self.label}'"
        return f"undid {count}"

    def send(self, client: ReviewCalls) -> list[ReviewBatch]:
        """Store it (on a worker thread): the batches the API answered, in order."""
        if self.kind == "undo":
            return [client.undo_batch(batch_id) for batch_id in self.undo]
        batches = []
        for start in range(0, len(self.crop_ids), MAX_BATCH):
            chunk = self.crop_ids[start : start + MAX_BATCH]
            if self.kind == "status":
                assert self.status is not None
                batches.append(client.review(chunk, self.status, node=self.node))
            else:
                assert self.label is not None
                batches.append(client.relabel_checked(chunk, label=self.label, node=self.node))
        return batches


def retryable(err: Exception) -> bool:
    """Whether a failed save may succeed when sent again (the API did not refuse it)."""
    if isinstance(err, ApiUnreachable):
        return True
    return isinstance(err, ApiError) and (err.status == 429 or err.status >= 500)


class SaveQueue(QObject):
    """Sends decisions one at a time, in order, retrying those that did not reach the API.

    Signals:
        saved(object, list): A :class:`Decision` and the :class:`ReviewBatch` list the API
            answered for it.
        refused(object, object): A decision the API refused, and the error (not retried).
        failing(object): A save did not reach the API (the error); it will be retried.
        recovered(): The API answered again after failures; the queue is draining.
        unsaved_changed(): :meth:`unsaved` changed.
        drained(): Every decision is stored (or refused).

    """

    saved = Signal(object, list)
    refused = Signal(object, object)
    failing = Signal(object)
    recovered = Signal()
    unsaved_changed = Signal()
    drained = Signal()

    def __init__(
        self,
        runner: Runner,
        client: Callable[[], ReviewCalls | None],
        *,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        parent: QObject | None = None,
    ) -> None:
        """Send with ``client()`` (the connection in use) on ``runner``.

        Args:
            runner: Runs the requests off the UI thread.
            client: The client to send with now (None: not connected; decisions wait).
            backoff_s: Waits before each retry (the last repeats).
            parent: The Qt parent.

        """
        super().__init__(parent)
        self.runner = runner
        self.client = client
        self.backoff_s = backoff_s
        self._queue: deque[Decision] = deque()
        self._in_flight: Decision | None = None
        self._attempts = 0
        self.last_error: Exception | None = None
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._send_next)

    # -- what is waiting ---------------------------------------------------------------------

    @property
    def failing_now(self) -> bool:
        """Whether the last attempt did not reach the API (decisions wait for a retry)."""
        return self.last_error is not None

    def pending(self) -> list[Decision]:
        """Every decision not stored yet, in order (the one in flight first)."""
        head = [self._in_flight] if self._in_flight is not None else []
        return head + list(self._queue)

    def unsaved(self) -> set[str]:
        """The crops of decisions that wait because a save did not reach the API."""
        if not self.failing_now:
            return set()
        return {crop_id for decision in self.pending() for crop_id in decision.crop_ids}

    def in_flight(self) -> Decision | None:
        """The decision being sent now, if any."""
        return self._in_flight

    # -- changing it -------------------------------------------------------------------------

    def push(self, decision: Decision) -> None:
        """Queue ``decision`` and send it as soon as those before it are stored.

        A decision about exactly the same crops and node as the last one still waiting
        (not in flight) replaces it: the operator changed their mind before it was sent.
        """
        if self._queue and _same_target(self._queue[-1], decision):
            self._queue[-1] = decision
        else:
            self._queue.append(decision)
        if self.failing_now:
            self.unsaved_changed.emit()
        self._send_next()

    def take_last(self) -> Decision | None:
        """Take back the last decision not sent yet (an undo before it reached the API)."""
        if not self._queue:
            return None
        decision = self._queue.pop()
        self.unsaved_changed.emit()
        if not self.pending():
            self._end_failure()
            self.drained.emit()
        return decision

    def retry_now(self) -> None:
        """Send the waiting head at once instead of after its backoff."""
        if self._retry.isActive():
            self._retry.stop()
            self._send_next()

    def discard(self) -> list[Decision]:
        """Forget every decision not sent (quitting without saving); what was dropped."""
        dropped = list(self._queue)
        self._queue.clear()
        self._retry.stop()
        if dropped:
            logger.warning("%d unsaved decision(s) discarded", len(dropped))
        self.unsaved_changed.emit()
        return dropped

    # -- sending -----------------------------------------------------------------------------

    def _send_next(self) -> None:
        if self._in_flight is not None or self._retry.isActive() or not self._queue:
            return
        client = self.client()
        if client is None:
            return
        decision = self._queue.popleft()
        self._in_flight = decision
        self.runner.submit(
            lambda: decision.send(client),
            on_done=lambda batches: self._stored(decision, batches),
            on_error=lambda err: self._failed(decision, err),
            name=f"save {decision.kind}",
            priority=2000,
        )

    def _stored(self, decision: Decision, batches: list[ReviewBatch]) -> None:
        self._in_flight = None
        if self._end_failure():
            self.recovered.emit()
        logger.info("decision %d stored: %s", decision.number, decision.describe())
        self.saved.emit(decision, batches)
        self._after_one()

    def _failed(self, decision: Decision, err: Exception) -> None:
        self._in_flight = None
        if not retryable(err):
            if self._end_failure():
                self.recovered.emit()  # the API answered, with a refusal
            logger.warning("decision %d refused: %s", decision.number, err)
            self.refused.emit(decision, err)
            self._after_one()
            return
        self._queue.appendleft(decision)  # the head again: order is kept
        first = self.last_error is None
        self.last_error = err
        delay = self.backoff_s[min(self._attempts, len(self.backoff_s) - 1)]
        self._attempts += 1
        logger.warning(
            "decision %d not stored (attempt %d, retry in %.1f s): %s",
            decision.number,
            self._attempts,
            delay,
            err,
        )
        if first:
            self.unsaved_changed.emit()
        self.failing.emit(err)
        self._retry.start(int(delay * 1000))

    def _after_one(self) -> None:
        if self._queue:
            self._send_next()
        else:
            self.drained.emit()

    def _end_failure(self) -> bool:
        """Leave the failing state; whether the queue was failing."""
        was = self.last_error is not None
        self.last_error = None
        self._attempts = 0
        if was:
            self.unsaved_changed.emit()
        return was


def _same_target(queued: Decision, new: Decision) -> bool:
    return (
        queued.kind != "undo"
        and new.kind != "undo"
        and queued.crop_ids == new.crop_ids
        and queued.node == new.node
    )
