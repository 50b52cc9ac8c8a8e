"""The cloud worker: intake → dynamic batcher → DAG → crop store + results DB → ack.

A delivery is acknowledged only once its results (or its dead letter) are committed, so the
intake delivers at least once; the results database ignores a second save of a ``crop_id``,
which makes the stored outcome exactly once. A message that cannot be decoded, is too large,
or whose JPEG does not decode becomes a dead letter with the reason, and is acknowledged: it
never stops the worker. When the database or the crop folder is unreachable the worker
retries with backoff and holds the acks, so the broker keeps the crops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import tenacity

from lensflow.cloud.heads.store import DbHeadStore
from lensflow.cloud.processing import CropProcessor, DecodedCrop, Outcome
from lensflow.cloud.storage import (
    ResultStore,
    StorageError,
    create_engine_for,
    migrate,
    open_crop_store,
)
from lensflow.cloud.worker.batcher import Batcher
from lensflow.cloud.worker.decoding import BatchDecoder, Decoded
from lensflow.cloud.worker.intake import Delivery, Intake
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.cloud.worker.receipts import ReceiptBook
from lensflow.cloud.worker.retry import retry_service, retry_storage
from lensflow.cloud.worker.startup import build_intake, fitted_window, open_versions
from lensflow.cloud.worker.triage import Letter, Triage, triage
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.dag.compiler import CompiledPipeline
from lensflow.shared.dag.engine import ImageResult
from lensflow.shared.protocol import CropHeader

logger = logging.getLogger(__name__)

_Written = TypeVar("_Written")


class Worker:
    """Consumes crop messages, runs the pipeline DAG on them in batches and stores the results.

    Construction migrates the database and loads the pipeline (plugins, models). :meth:`run`
    blocks until :meth:`stop` is called (from another thread or a signal handler).

    Args:
        config: The cloud config.
        registry: Where the pipeline's plugin classes are resolved; the default when None.
        intake: Where crops come from; built from ``config.intake`` when None.
        metrics: Where to count; a fresh registry when None.
        max_batch: Batch size; from the pipeline's node ``batch`` settings when None.
        max_wait_ms: Batch wait; from the pipeline's node ``batch`` settings when None.

    Raises:
        StorageError: If the database cannot be migrated.
        ConfigError: If the pipeline file is invalid.

    """

    def __init__(
        self,
        config: CloudConfig,
        *,
        registry: PluginRegistry | None = None,
        intake: Intake | None = None,
        metrics: WorkerMetrics | None = None,
        max_batch: int | None = None,
        max_wait_ms: float | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or WorkerMetrics()
        self.engine = create_engine_for(config.database.url.get_secret_value())
        migrate(self.engine)
        self.results = ResultStore(self.engine)
        self.crops = open_crop_store(config.crop_store)
        self.registry = (registry or default_registry()).with_heads(DbHeadStore(self.engine))
        self.intake = intake or build_intake(config.intake, metrics=self.metrics)
        running = open_versions(
            config=config, engine=self.engine, registry=self.registry, intake=self.intake
        )
        self.processor = CropProcessor(
            running.pipeline, version=running.version.sha256, results=self.results, crops=self.crops
        )
        self.follower = running.follower
        self._overrides = (max_batch, max_wait_ms)
        self.batcher = self._batcher(
            self.processor.pipeline.compiled, max_batch=max_batch, max_wait_ms=max_wait_ms
        )
        self._stopping = threading.Event()
        self._decoder = BatchDecoder()
        self._receipts = ReceiptBook(self.intake.name)  # owed for the batch in progress
        self._acked: set[str] = set()  # crop ids committed in the batch in progress

    def _swap_if_ready(self) -> None:
        """Between two batches: run the new version if the follower has one loaded."""
        taken = self.follower.take()
        if taken is None:
            return
        version, pipeline = taken
        was = self.processor.version
        self.processor.pipeline, self.processor.version = pipeline, version.sha256
        size, wait = fitted_window(pipeline.compiled, self.intake.window, *self._overrides)
        self.batcher.resize(max_batch=size, max_wait_ms=wait)
        self.metrics.version_swaps.inc()
        logger.info(
            "worker %s runs pipeline %s %s (%s), was %s; batch=%d wait_ms=%g",
            self.name,
            version.name,
            version.source,
            version.sha256[:12],
            was[:12],
            size,
            wait,
        )

    def _batcher(
        self, compiled: CompiledPipeline, *, max_batch: int | None, max_wait_ms: float | None
    ) -> Batcher[Delivery]:
        """A batcher sized by the pipeline (or the overrides), within the intake's window."""
        size, wait = fitted_window(compiled, self.intake.window, max_batch, max_wait_ms)
        capacity = 2 * self.intake.window  # old + new window across a reconnect
        return Batcher(max_batch=size, max_wait_ms=wait, capacity=capacity)

    @property
    def name(self) -> str:
        """The worker's id in log lines: its intake's client id or consumer tag."""
        return self.intake.name

    def run(self) -> None:
        """Warm the plugins up, start the intake and process batches until :meth:`stop`."""
        try:
            self.processor.pipeline.warmup()
        except Exception:  # a plugin that fails here fails per crop later, isolated by the DAG
            logger.exception("pipeline warmup failed; running anyway")
        self.intake.start(self.batcher.put)
        self.follower.start()
        logger.info(
            "worker %s running pipeline=%s version=%s batch=%d wait_ms=%g",
            self.name,
            self.processor.name,
            self.processor.version[:12],
            self.batcher.max_batch,
            self.batcher.max_wait_s * 1000,
        )
        try:
            while not self._stopping.is_set():
                self._swap_if_ready()
                batch = self.batcher.next_batch()
                if batch:
                    self._process_safely(batch)
        finally:
            self.batcher.close()
            self.intake.stop()
            self.follower.stop()
            self.processor.crops.close()
            self._decoder.close()
            self.engine.dispose()
            logger.info("worker %s stopped", self.name)

    def _process_safely(self, batch: list[Delivery]) -> None:
        """Process a batch; a bug in doing so is logged, not allowed to end the worker."""
        try:
            self.process_batch(batch)
        except Exception:  # its deliveries stay unacked: the broker re-sends them
            topics = sorted({delivery.topic for delivery in batch})
            logger.exception("batch of %d failed topics=%s", len(batch), topics)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress (safe from a signal handler)."""
        self._stopping.set()

    def process_batch(self, batch: list[Delivery]) -> None:
        """Sort out, decode, run the DAG on, store and acknowledge one batch; send receipts.

        Re-deliveries and conflicts are recognised before any JPEG is decoded
        (:func:`~lensflow.cloud.worker.triage.triage`). Once the batch is committed, the
        receipts of its crops (stored, duplicate or dead letter) go to their cameras. A stop
        request lets the batch finish, but ends the retries of a failing store or of an
        inference service that is down: what is not committed then is not acknowledged, and
        the broker delivers it again.

        Args:
            batch: Deliveries from this worker's intake.

        """
        start = time.perf_counter()
        for delivery in batch:
            if delivery.redelivered:
                self.metrics.redelivered.inc()
        sorted_out = self._retrying(
            f"the crop ids of a batch of {len(batch)}",
            lambda: triage(
                batch, max_bytes=self.config.max_message_bytes, known=self.results.known_crops
            ),
        )
        if not isinstance(sorted_out, Triage):
            return  # stopping, or the lookup refused: nothing acked, the broker re-sends
        for delivery, message in sorted_out.duplicates:
            self._ack_crop(delivery, message.header, "duplicate")
        pixels = self.processor.pipeline.needs_pixels  # else only the JPEG headers are checked
        decoded, bad_images = self._decoder.decode(sorted_out.fresh, pixels=pixels)
        arrival = {id(delivery): index for index, delivery in enumerate(batch)}
        for letter in sorted(
            [*sorted_out.letters, *bad_images], key=lambda x: arrival[id(x.delivery)]
        ):
            self._dead_letter(letter)  # in arrival order
        results = self._run_dag([item.crop for item in decoded]) if decoded else []
        if decoded and results is not None:  # None: stopping in an outage, nothing acked
            done: list[tuple[Decoded, ImageResult]] = []
            for item, result in zip(decoded, results, strict=True):
                if result is None:
                    reason = "the pipeline raised on this crop (see the worker log)"
                    crop_id = item.crop.header.crop_id
                    self._dead_letter(Letter(item.delivery, reason, "pipeline", crop_id))
                else:
                    done.append((item, result))
            self._store_batch_and_ack(done)
        for delivery, message in sorted_out.copies:  # after the first copy's outcome
            if message.header.crop_id in self._acked:
                self._ack_crop(delivery, message.header, "duplicate")
        self.metrics.receipts.inc(self._receipts.flush(self.intake.publish))
        self._acked.clear()
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - start)

    def _run_dag(self, crops: list[DecodedCrop]) -> list[ImageResult | None] | None:
        """Run the DAG on a batch; while an inference service is down, wait and run it again.

        Returns:
            Each crop's result (None for a crop the engine raised on); None if the worker
            stops while the service is still unavailable (the batch stays unacknowledged).

        """
        outage_since: list[float] = []  # when this outage began, once it has

        def retrying_soon(state: tenacity.RetryCallState) -> None:
            self.metrics.service_retries.inc()
            if not outage_since:  # one warning per outage, not per retry
                outage_since.append(time.monotonic())
                self.metrics.service_outages.inc()
                error = state.outcome.exception() if state.outcome else None
                logger.warning(
                    "worker %s: inference service unavailable, holding a batch of %d and "
                    "retrying with backoff: %s",
                    *(self.name, len(crops), error),
                )

        results = retry_service(
            lambda: self.processor.run(crops), stopping=self._stopping, before_sleep=retrying_soon
        )
        if outage_since and results is not None:
            waited = time.monotonic() - outage_since[0]
            logger.info("worker %s: inference service back after %.1f s", self.name, waited)
        return results

    def _store_batch_and_ack(self, done: list[tuple[Decoded, ImageResult]]) -> None:
        """Store a batch in one commit (retrying transient failures), then ack each crop.

        If the database refuses the batch (not a transient failure), its crops are stored
        one by one, so only the crop it refuses becomes a dead letter.
        """
        if len(done) <= 1:
            for item, result in done:
                self._store_and_ack(item, result)
            return
        triples = [(item.crop, result, item.delivery.received_at) for item, result in done]
        outcomes = self._retrying(
            f"a batch of {len(done)}", lambda: self.processor.store_many(triples)
        )
        if outcomes is None:
            return  # stopping while storage fails: no ack, the broker sends them again
        if isinstance(outcomes, StorageError):
            logger.warning(
                "a batch of %d was refused (%s); storing one by one", len(done), outcomes
            )
            for item, result in done:
                self._store_and_ack(item, result)
            return
        for (item, _), outcome in zip(done, outcomes, strict=True):
            self._ack_stored(item, outcome)

    def _store_and_ack(self, item: Decoded, result: ImageResult) -> None:
        """Store the JPEG and the results (retrying transient failures), then ack."""
        header, delivery = item.crop.header, item.delivery
        outcome = self._retrying(
            f"crop_id={header.crop_id}",
            lambda: self.processor.store(item.crop, result, received_at=delivery.received_at),
        )
        if outcome is None:
            return  # stopping while storage fails: no ack, the broker sends it again
        if isinstance(outcome, StorageError):  # the database refuses this very crop
            reason = f"could not store the crop: {outcome}"
            self._dead_letter(Letter(delivery, reason, "storage", header.crop_id))
            return
        self._ack_stored(item, outcome)

    def _ack_stored(self, item: Decoded, outcome: Outcome) -> None:
        """Acknowledge a stored (or duplicate) crop, count it and owe its receipt."""
        self._ack_crop(item.delivery, item.crop.header, outcome)

    def _ack_crop(self, delivery: Delivery, header: CropHeader, outcome: Outcome) -> None:
        """Acknowledge a crop that is committed (stored now or before), count, owe a receipt."""
        self.intake.ack(delivery)
        self._acked.add(header.crop_id)
        self._receipts.add(delivery.topic, header.crop_id, outcome)
        self.metrics.messages.labels(outcome=outcome).inc()
        self.metrics.latency_seconds.observe(
            max(0.0, (datetime.now(UTC) - header.sent_at).total_seconds())
        )
        logger.info(
            "crop %s crop_id=%s topic=%s worker=%s redelivered=%s",
            outcome,
            header.crop_id,
            delivery.topic,
            self.name,
            delivery.redelivered,
        )

    def _dead_letter(self, letter: Letter) -> None:
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

        record = self._retrying(f"dead letter from topic={delivery.topic}", write)
        if record is None:
            return
        self.intake.ack(delivery)
        if isinstance(record, StorageError):  # not even the dead letter could be kept
            self.metrics.messages.labels(outcome="dropped").inc()
            logger.error(
                "message dropped topic=%s worker=%s: %s", delivery.topic, self.name, record
            )
            return
        self._receipts.add(delivery.topic, letter.crop_id, "dead_letter", letter.reason)
        self.metrics.messages.labels(outcome="dead_letter").inc()
        self.metrics.dead_letters.labels(reason=kind).inc()
        # the store already logged the dead letter with its reason; this adds who and why
        logger.debug(
            "dead letter id=%s topic=%s worker=%s kind=%s", record, delivery.topic, self.name, kind
        )

    def _retrying(self, what: str, write: Callable[[], _Written]) -> _Written | StorageError | None:
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

        return retry_storage(write, stopping=self._stopping, before_sleep=retrying_soon)
