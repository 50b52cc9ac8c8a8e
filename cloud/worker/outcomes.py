"""What becomes of each delivery of a batch: acknowledged with its outcome, or dead-lettered.

Either way it is counted and logged, and its receipt is owed to its camera, sent once its
batch is committed (:class:`BatchState` holds what a batch owes between the worker's two
stages). Storage writes are retried while the database or the crop store is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import tenacity

from lensflow.cloud.processing import Outcome
from lensflow.cloud.storage import ResultStore, StorageError
from lensflow.cloud.worker.decoding import Decoded
from lensflow.cloud.worker.intake import Delivery, Intake
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.cloud.worker.receipts import ReceiptBook
from lensflow.cloud.worker.retry import retry_storage
from lensflow.cloud.worker.triage import Letter
from lensflow.shared.dag.engine import ImageResult
from lensflow.shared.protocol import CropHeader, CropMessage

logger = logging.getLogger(__name__)

_Written = TypeVar("_Written")


@dataclass
class BatchState:
    """A batch between the worker's two stages: what is left to store, ack and confirm."""

    batch: list[Delivery]
    receipts: ReceiptBook  # owed to the cameras once the batch is committed
    done: list[tuple[Decoded, ImageResult]] = field(default_factory=list)  # to store
    copies: list[tuple[Delivery, CropMessage]] = field(default_factory=list)  # follow firsts
    acked: set[str] = field(default_factory=set)  # crop ids acknowledged
    dead: dict[str, str] = field(default_factory=dict)  # crop ids dead-lettered: the reason
    started: float = field(default_factory=time.perf_counter)
    written: Future[list[str]] | None = None  # the JPEG writes of its fresh crops, under way


class Outcomes:
    """Acknowledges, dead-letters, counts and logs a worker's deliveries.

    Args:
        intake: Where deliveries are acknowledged.
        results: Where dead letters are written.
        metrics: Where outcomes and retries are counted.
        stopping: Set when the worker stops: it ends the storage retries.

    """

    def __init__(
        self,
        *,
        intake: Intake,
        results: ResultStore,
        metrics: WorkerMetrics,
        stopping: threading.Event,
    ) -> None:
        self.intake = intake
        self.results = results
        self.metrics = metrics
        self.stopping = stopping

    def ack(
        self, delivery: Delivery, header: CropHeader, outcome: Outcome, state: BatchState
    ) -> None:
        """Acknowledge a crop that is committed (stored now or before), count, owe a receipt."""
        self.intake.ack(delivery)
        state.acked.add(header.crop_id)
        state.receipts.add(delivery.topic, header.crop_id, outcome)
        self.metrics.messages.labels(outcome=outcome).inc()
        self.metrics.latency_seconds.observe(
            max(0.0, (datetime.now(UTC) - header.sent_at).total_seconds())
        )
        logger.info(
            "crop %s crop_id=%s topic=%s worker=%s redelivered=%s",
            outcome,
            header.crop_id,
            delivery.topic,
            self.intake.name,
            delivery.redelivered,
        )

    def ack_copy_of_dead_letter(
        self, delivery: Delivery, header: CropHeader, reason: str, state: BatchState
    ) -> None:
        """Acknowledge a copy of a crop that became a dead letter; its receipt says so too."""
        self.intake.ack(delivery)
        state.receipts.add(delivery.topic, header.crop_id, "dead_letter", reason)
        self.metrics.messages.labels(outcome="duplicate").inc()
        logger.info(
            "crop duplicate of a dead letter crop_id=%s topic=%s worker=%s",
            header.crop_id,
            delivery.topic,
            self.intake.name,
        )

    def dead_letter(self, letter: Letter, state: BatchState) -> None:
        """Record a dead letter (retrying while the database is down), ack, owe a receipt."""
        delivery, kind = letter.delivery, letter.kind

        def write() -> int:
            return self.results.save_dead_letter(
                source=self.intake.source,
                topic=delivery.topic,
                reason=letter.reason,
                payload=delivery.payload,
                received_at=delivery.received_at,
                crop_id=letter.crop_id,
            )

        record = self.retrying(f"dead letter from topic={delivery.topic}", write)
        if record is None:
            return
        self.intake.ack(delivery)
        if letter.crop_id is not None:  # its copies follow it (see ack_copy_of_dead_letter)
            state.dead[letter.crop_id] = letter.reason
        if isinstance(record, StorageError):  # not even the dead letter could be kept
            self.metrics.messages.labels(outcome="dropped").inc()
            logger.error(
                "message dropped topic=%s worker=%s: %s", delivery.topic, self.intake.name, record
            )
            return
        state.receipts.add(delivery.topic, letter.crop_id, "dead_letter", letter.reason)
        self.metrics.messages.labels(outcome="dead_letter").inc()
        self.metrics.dead_letters.labels(reason=kind).inc()
        # the store already logged the dead letter with its reason; this adds who and why
        logger.debug(
            "dead letter id=%s topic=%s worker=%s kind=%s",
            record,
            delivery.topic,
            self.intake.name,
            kind,
        )

    def retrying(self, what: str, write: Callable[[], _Written]) -> _Written | StorageError | None:
        """Call ``write`` until it succeeds; retry transient storage failures with backoff.

        Returns:
            What ``write`` returned; the StorageError if the failure is not transient (the
            data is refused, not the database down); None if stopping while it still fails.

        """

        def retrying_soon(state: tenacity.RetryCallState) -> None:
            self.metrics.storage_retries.inc()
            delay = state.upcoming_sleep
            error = state.outcome.exception() if state.outcome else None
            logger.warning("storage failed for %s (retry in %.1f s): %s", what, delay, error)

        return retry_storage(write, stopping=self.stopping, before_sleep=retrying_soon)
