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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

import tenacity
from sqlalchemy import exc as sa_exc

from lensflow.cloud.processing import CropProcessor, DecodedCrop, Outcome, decode_crop_image
from lensflow.cloud.storage import CropStore, ResultStore, StorageError, create_engine_for, migrate
from lensflow.cloud.worker.batcher import Batcher
from lensflow.cloud.worker.intake import Delivery, Intake
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.config.cloud import Intake as IntakeConfig
from lensflow.shared.dag.compiler import CompiledPipeline
from lensflow.shared.dag.engine import ImageResult
from lensflow.shared.errors import ImageError, ProtocolError
from lensflow.shared.protocol import CropMessage, decode_crop

logger = logging.getLogger(__name__)

DeadLetterKind = Literal["protocol", "oversized", "image", "pipeline", "storage"]

_Written = TypeVar("_Written")

_DECODERS = 2
"""Threads that decode a batch's JPEGs at once."""
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 10.0
_TRANSIENT_CAUSES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)


@dataclass(frozen=True)
class _Decoded:
    """A delivery whose envelope and JPEG decoded."""

    delivery: Delivery
    crop: DecodedCrop


def build_intake(config: IntakeConfig, *, metrics: WorkerMetrics | None = None) -> Intake:
    """Create the intake a config's ``intake`` section describes (imported lazily).

    Args:
        config: ``intake`` of the cloud config (``type: mqtt`` or ``type: amqp``).
        metrics: Where the intake counts connections and broker drops.

    Returns:
        The intake, not started.

    """
    if config.type == "mqtt":
        from lensflow.cloud.worker.intake_mqtt import MqttIntake

        return MqttIntake(config, metrics=metrics)
    from lensflow.cloud.worker.intake_amqp import AmqpIntake

    return AmqpIntake(config, metrics=metrics)


def batch_window(compiled: CompiledPipeline) -> tuple[int, float]:
    """The worker's batch size and wait: the largest ``batch`` of any enabled node.

    Each node runs once per worker batch, so the batch must be as large as the largest node
    batch; the wait is the longest a node accepts for its batch to fill.

    Returns:
        ``(max_batch, max_wait_ms)``.

    """
    batches = [node.config.batch for node in compiled.nodes if node.config.enabled]
    if not batches:
        return 1, 0.0
    return max(b.max_size for b in batches), max(b.max_wait_ms for b in batches)


def is_transient(err: StorageError) -> bool:
    """Whether a storage failure may pass by itself (database down or locked, disk full)."""
    return isinstance(err.__cause__, _TRANSIENT_CAUSES)


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
        self.crops = CropStore(config.crop_store)
        self.processor = CropProcessor.load(
            config.pipeline, registry=registry, results=self.results, crops=self.crops
        )
        self.intake = intake or build_intake(config.intake, metrics=self.metrics)
        self.batcher = self._batcher(
            self.processor.pipeline.compiled, max_batch=max_batch, max_wait_ms=max_wait_ms
        )
        self._stopping = threading.Event()
        self._decoders = ThreadPoolExecutor(_DECODERS, thread_name_prefix="jpeg-decode")

    def _batcher(
        self, compiled: CompiledPipeline, *, max_batch: int | None, max_wait_ms: float | None
    ) -> Batcher[Delivery]:
        """A batcher sized by the pipeline (or the overrides), within the intake's window."""
        size, wait = batch_window(compiled)
        size, wait = max_batch or size, wait if max_wait_ms is None else max_wait_ms
        if size > self.intake.window:
            logger.warning(
                "batch of %d cannot fill through an in-flight window of %d: batching %d",
                size,
                self.intake.window,
                self.intake.window,
            )
            size = self.intake.window
        capacity = 2 * max(self.intake.window, size)  # old + new window across a reconnect
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
        logger.info(
            "worker %s running pipeline=%s batch=%d wait_ms=%g",
            self.name,
            self.processor.name,
            self.batcher.max_batch,
            self.batcher.max_wait_s * 1000,
        )
        try:
            while not self._stopping.is_set():
                batch = self.batcher.next_batch()
                if batch:
                    self._process_safely(batch)
        finally:
            self.batcher.close()
            self.intake.stop()
            self.processor.crops.close()
            self._decoders.shutdown(wait=True)
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
        """Decode, run the DAG on, store and acknowledge one batch of deliveries.

        A stop request lets the batch finish, but ends the retries of a failing store: what
        is not committed then is not acknowledged, and the broker delivers it again.

        Args:
            batch: Deliveries from this worker's intake.

        """
        start = time.perf_counter()
        decoded = self._decode(batch)
        if decoded:
            results = self.processor.run([item.crop for item in decoded])
            done: list[tuple[_Decoded, ImageResult]] = []
            for item, result in zip(decoded, results, strict=True):
                if result is None:
                    reason = "the pipeline raised on this crop (see the worker log)"
                    self._dead_letter(item.delivery, reason, kind="pipeline")
                else:
                    done.append((item, result))
            self._store_batch_and_ack(done)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - start)

    def _decode(self, batch: list[Delivery]) -> list[_Decoded]:
        """Decode the batch's envelopes, then its JPEGs on the decoder threads.

        OpenCV releases the GIL while it decodes, so the JPEGs of a batch decode in
        parallel. A message that is too large, not a valid envelope or whose JPEG does not
        decode is dead-lettered (and acked), in arrival order; the others come back in order.
        """
        parsed = [(delivery, self._parse(delivery)) for delivery in batch]
        messages = [message for _, message in parsed if isinstance(message, CropMessage)]
        if len(messages) > 1:
            images = iter(list(self._decoders.map(_decode_image, messages)))
        else:
            images = iter([_decode_image(message) for message in messages])
        decoded = []
        for delivery, message in parsed:
            if not isinstance(message, CropMessage):
                self._dead_letter(delivery, message[0], kind=message[1])
                continue
            crop = next(images)
            if isinstance(crop, ImageError):
                self._dead_letter(delivery, str(crop), kind="image")
            else:
                decoded.append(_Decoded(delivery, crop))
        return decoded

    def _parse(self, delivery: Delivery) -> CropMessage | tuple[str, DeadLetterKind]:
        """A delivery's envelope, or why it is a dead letter (too large, invalid)."""
        if delivery.redelivered:
            self.metrics.redelivered.inc()
        size, limit = len(delivery.payload), self.config.max_message_bytes
        if size > limit:
            return f"message must be at most max_message_bytes={limit} bytes, but is {size}", (
                "oversized"
            )
        try:
            return decode_crop(delivery.payload, max_bytes=limit, topic=delivery.topic)
        except ProtocolError as err:
            return f"invalid crop message: {err}", "protocol"

    def _store_batch_and_ack(self, done: list[tuple[_Decoded, ImageResult]]) -> None:
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

    def _store_and_ack(self, item: _Decoded, result: ImageResult) -> None:
        """Store the JPEG and the results (retrying transient failures), then ack."""
        header, delivery = item.crop.header, item.delivery
        outcome = self._retrying(
            f"crop_id={header.crop_id}",
            lambda: self.processor.store(item.crop, result, received_at=delivery.received_at),
        )
        if outcome is None:
            return  # stopping while storage fails: no ack, the broker sends it again
        if isinstance(outcome, StorageError):  # the database refuses this very crop
            self._dead_letter(delivery, f"could not store the crop: {outcome}", kind="storage")
            return
        self._ack_stored(item, outcome)

    def _ack_stored(self, item: _Decoded, outcome: Outcome) -> None:
        """Acknowledge a stored (or duplicate) crop and count it."""
        header, delivery = item.crop.header, item.delivery
        self.intake.ack(delivery)
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

    def _dead_letter(self, delivery: Delivery, reason: str, *, kind: DeadLetterKind) -> None:
        """Record a dead letter (retrying while the database is down), then ack."""

        def write() -> int:
            return self.results.save_dead_letter(
                source=self.intake.source,
                topic=delivery.topic,
                reason=reason,
                payload=delivery.payload,
                received_at=delivery.received_at,
            )

        letter = self._retrying(f"dead letter from topic={delivery.topic}", write)
        if letter is None:
            return
        self.intake.ack(delivery)
        if isinstance(letter, StorageError):  # not even the dead letter could be kept
            self.metrics.messages.labels(outcome="dropped").inc()
            logger.error(
                "message dropped topic=%s worker=%s: %s", delivery.topic, self.name, letter
            )
            return
        self.metrics.messages.labels(outcome="dead_letter").inc()
        self.metrics.dead_letters.labels(reason=kind).inc()
        # the store already logged the dead letter with its reason; this adds who and why
        logger.debug(
            "dead letter id=%s topic=%s worker=%s kind=%s", letter, delivery.topic, self.name, kind
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

        def pause(seconds: float) -> None:  # ends early when the worker stops
            self._stopping.wait(seconds)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda err: isinstance(err, StorageError) and is_transient(err)
            ),
            wait=tenacity.wait_exponential(multiplier=_RETRY_FIRST_S, max=_RETRY_MAX_S),
            stop=tenacity.stop_when_event_set(self._stopping),
            sleep=pause,
            before_sleep=retrying_soon,
            reraise=True,
        )
        try:
            return retrying(write)
        except StorageError as err:
            return None if is_transient(err) else err


def _decode_image(message: CropMessage) -> DecodedCrop | ImageError:
    """A crop's pixels, or why its JPEG does not decode (run on a decoder thread)."""
    try:
        return decode_crop_image(message.header, message.jpeg)
    except ImageError as err:
        return err
