"""The cloud worker: intake → dynamic batcher → DAG → crop store + results DB → ack.

A delivery is acknowledged only once its results (or its dead letter) are committed, so the
intake delivers at least once; the results database ignores a second save of a ``crop_id``,
which makes the stored outcome exactly once. A message that cannot be decoded, is too large,
or whose JPEG does not decode becomes a dead letter with the reason, and is acknowledged: it
never stops the worker. When the database or the crop folder is unreachable, or an inference
server a node needs is down, the worker retries with backoff and holds the acks, so the broker
keeps the crops. A batch is sorted out and run through the DAG while the previous one commits.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from lensflow.cloud.heads.store import DbHeadStore
from lensflow.cloud.processing import CropProcessor, DecodedCrop
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
from lensflow.cloud.worker.outcomes import BatchState, Outcomes
from lensflow.cloud.worker.receipts import ReceiptBook
from lensflow.cloud.worker.retry import retry_service
from lensflow.cloud.worker.startup import build_intake, fitted_window, open_versions
from lensflow.cloud.worker.triage import Letter, Triage, triage
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.dag.compiler import CompiledPipeline
from lensflow.shared.dag.engine import ImageResult

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
        self.outcomes = Outcomes(
            intake=self.intake, results=self.results, metrics=self.metrics, stopping=self._stopping
        )
        self._decoder = BatchDecoder()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="jpeg-write")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._in_flight: Future[None] | None = None  # the commit of the previous batch
        self._in_flight_ids: dict[str, str] = {}  # its crops: crop_id -> JPEG sha256
        self._last_acked: set[str] = set()  # crop ids the last commit acknowledged
        self._last_dead: dict[str, str] = {}  # crop ids it dead-lettered, with the reason

    def _swap_if_ready(self) -> None:
        """Between two batches: run the new version if the follower has one loaded."""
        taken = self.follower.take()
        if taken is None:
            return
        version, pipeline = taken
        self._drain()  # the previous batch is stored under the version that ran it
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
            self._drain()
            self._committer.shutdown(wait=True)
            self._writer.shutdown(wait=True)
            self.batcher.close()
            self.intake.stop()
            self.follower.stop()
            self.processor.crops.close()
            self._decoder.close()
            self.engine.dispose()
            logger.info("worker %s stopped", self.name)

    def _process_safely(self, batch: list[Delivery]) -> None:
        """Prepare a batch while the previous one commits, then hand it to the committer.

        The committer thread stores one batch at a time, in order, while this thread sorts
        out, decodes and runs the DAG on the next: the crop store's and the database's waits
        overlap the next batch's work. A bug in either stage is logged, not allowed to end
        the worker; the batch's deliveries then stay unacked and the broker re-sends them.
        """
        try:
            state = self._prepare(batch)
        except Exception:
            _log_failed(batch)
            return
        self._drain()
        if state is not None:
            self._in_flight_ids = {
                item.crop.header.crop_id: item.crop.header.jpeg_sha256 for item, _ in state.done
            }
            self._in_flight = self._committer.submit(self._commit_safely, state)

    def _commit_safely(self, state: BatchState) -> None:
        """Commit a batch on the committer thread; a bug is logged (the batch stays unacked)."""
        try:
            self._commit(state)
        except Exception:
            _log_failed(state.batch)

    def _drain(self) -> None:
        """Wait until the previous batch's commit is over."""
        if self._in_flight is not None:
            self._in_flight.result()
            self._in_flight = None

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
        the broker delivers it again. (:meth:`run` does the same in two stages, see
        :meth:`_process_safely`.)

        Args:
            batch: Deliveries from this worker's intake.

        """
        self._drain()
        self._in_flight_ids = {}
        state = self._prepare(batch)
        if state is not None:
            self._commit(state)

    def _prepare(self, batch: list[Delivery]) -> BatchState | None:
        """Sort a batch out, ack its duplicates, dead-letter what must be, run the DAG.

        Returns:
            What is left to commit; None if stopping before the crop ids could be looked up.

        """
        state = BatchState(batch, ReceiptBook(self.intake.name))
        for delivery in batch:
            if delivery.redelivered:
                self.metrics.redelivered.inc()
        in_flight = self._in_flight_ids  # committed by now, or about to be: not fresh
        sorted_out = self.outcomes.retrying(
            f"the crop ids of a batch of {len(batch)}",
            lambda: triage(
                batch,
                max_bytes=self.config.max_message_bytes,
                known=self.results.known_crops,
                in_flight=in_flight,
            ),
        )
        if not isinstance(sorted_out, Triage):
            return None  # stopping, or the lookup refused: nothing acked, the broker re-sends
        for delivery, message in sorted_out.duplicates:
            self.outcomes.ack(delivery, message.header, "duplicate", state)
        pixels = self.processor.pipeline.needs_pixels  # else only the JPEG headers are checked
        decoded, bad_images = self._decoder.decode(sorted_out.fresh, pixels=pixels)
        if len(decoded) > 1:  # the crop store's writes overlap the DAG and the last commit
            crops = [item.crop for item in decoded]
            state.written = self._writer.submit(self.processor.write_jpegs, crops)
        arrival = {id(delivery): index for index, delivery in enumerate(batch)}
        for letter in sorted(
            [*sorted_out.letters, *bad_images], key=lambda x: arrival[id(x.delivery)]
        ):
            self.outcomes.dead_letter(letter, state)  # in arrival order
        state.copies = sorted_out.copies
        results = self._run_dag([item.crop for item in decoded]) if decoded else []
        if results is None:  # stopping in an outage: nothing more acked
            return state
        for item, result in zip(decoded, results, strict=True):
            if result is None:
                reason = "the pipeline raised on this crop (see the worker log)"
                crop_id = item.crop.header.crop_id
                self.outcomes.dead_letter(Letter(item.delivery, reason, "pipeline", crop_id), state)
            else:
                state.done.append((item, result))
        return state

    def _commit(self, state: BatchState) -> None:
        """Store the batch's crops, ack them and their copies, send the batch's receipts."""
        self._store_batch_and_ack(state)
        for delivery, message in state.copies:  # after the first copy's outcome
            crop_id = message.header.crop_id
            if crop_id in state.acked or crop_id in self._last_acked:
                self.outcomes.ack(delivery, message.header, "duplicate", state)
            elif (reason := state.dead.get(crop_id, self._last_dead.get(crop_id))) is not None:
                self.outcomes.ack_copy_of_dead_letter(delivery, message.header, reason, state)
        self.metrics.receipts.inc(state.receipts.flush(self.intake.publish))
        self._last_acked, self._last_dead = state.acked, state.dead
        self.metrics.batch_size.observe(len(state.batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - state.started)

    def _run_dag(self, crops: list[DecodedCrop]) -> list[ImageResult | None] | None:
        """Run the DAG on a batch, waiting out an inference service outage (see retry.py)."""
        return retry_service(
            lambda: self.processor.run(crops),
            stopping=self._stopping,
            metrics=self.metrics,
            what=f"worker {self.name}: a batch of {len(crops)}",
        )

    def _store_batch_and_ack(self, state: BatchState) -> None:
        """Store a batch in one commit (retrying transient failures), then ack each crop.

        If the database refuses the batch (not a transient failure), its crops are stored
        one by one, so only the crop it refuses becomes a dead letter.
        """
        done = state.done
        if len(done) <= 1:
            for item, result in done:
                self._store_and_ack(item, result, state)
            return
        triples = [(item.crop, result, item.delivery.received_at) for item, result in done]
        outcomes = self.outcomes.retrying(
            f"a batch of {len(done)}",
            lambda: self.processor.store_many(triples, written=state.written),
        )
        if outcomes is None:
            return  # stopping while storage fails: no ack, the broker sends them again
        if isinstance(outcomes, StorageError):
            logger.warning(
                "a batch of %d was refused (%s); storing one by one", len(done), outcomes
            )
            for item, result in done:
                self._store_and_ack(item, result, state)
            return
        for (item, _), outcome in zip(done, outcomes, strict=True):
            self.outcomes.ack(item.delivery, item.crop.header, outcome, state)

    def _store_and_ack(self, item: Decoded, result: ImageResult, state: BatchState) -> None:
        """Store the JPEG and the results (retrying transient failures), then ack."""
        header, delivery = item.crop.header, item.delivery
        outcome = self.outcomes.retrying(
            f"crop_id={header.crop_id}",
            lambda: self.processor.store(item.crop, result, received_at=delivery.received_at),
        )
        if outcome is None:
            return  # stopping while storage fails: no ack, the broker sends it again
        if isinstance(outcome, StorageError):  # the database refuses this very crop
            reason = f"could not store the crop: {outcome}"
            self.outcomes.dead_letter(Letter(delivery, reason, "storage", header.crop_id), state)
            return
        self.outcomes.ack(delivery, header, outcome, state)


def _log_failed(batch: list[Delivery]) -> None:
    """Log a batch that failed on a bug; its deliveries stay unacked (the broker re-sends)."""
    topics = sorted({delivery.topic for delivery in batch})
    logger.exception("batch of %d failed topics=%s", len(batch), topics)
