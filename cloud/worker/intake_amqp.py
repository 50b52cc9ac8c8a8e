"""AMQP intake: crops from a RabbitMQ quorum queue shared by every worker (the scale-out path).

Edges publish over MQTT 3.1.1 to RabbitMQ's MQTT plugin, which routes each crop into
``amq.topic``; a durable quorum queue bound to ``lensflow.v1.*.*.crops`` holds them for the
workers. Each worker consumes with ``basic_qos(prefetch_count=prefetch)`` and manual acks: a
worker that dies loses nothing, its unacked crops go to the others at once.

pika's ``BlockingConnection`` is not thread-safe: the connection lives on the intake's own
thread, and :meth:`AmqpIntake.ack` hands each ack to that thread with
``connection.add_callback_threadsafe``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from lensflow.cloud.worker.amqp_queue import RabbitError, declare_crops_queue
from lensflow.cloud.worker.intake import (
    Delivery,
    DeliveryHandler,
    Generation,
    IntakeSource,
)
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.shared.config.cloud import AmqpIntake as AmqpIntakeConfig
from lensflow.shared.retry import Backoff

logger = logging.getLogger(__name__)

_POLL_S = 0.2  # how often the connection thread looks at the stop flag
_JOIN_TIMEOUT_S = 10.0


def topic_of(routing_key: str) -> str:
    """The MQTT topic a crop was published on, from the routing key RabbitMQ gave it.

    RabbitMQ 3.10's MQTT plugin turns each ``/`` into ``.`` and leaves a ``.`` as it is
    (measured), so ``lensflow.v1.site1.cam1.crops`` comes from ``lensflow/v1/site1/cam1/crops``.
    A site or camera id containing ``.`` cannot be told apart: its crops match no
    ``lensflow.v1.*.*.crops`` binding (RabbitMQ drops them after the PUBACK), and with a wider
    binding they would arrive here on a topic that fails the envelope's topic check (a dead
    letter). Keep ``.`` out of site and camera ids on the RabbitMQ path.
    """
    return routing_key.replace(".", "/")


@dataclass(frozen=True)
class _Token:
    """What acknowledges an AMQP delivery: its connection and delivery tag."""

    generation: int
    tag: int


class AmqpIntake:
    """Crops from a quorum queue, with a prefetch window and acks after commit.

    Args:
        config: The ``intake`` section of the cloud config (``type: amqp``).
        metrics: Where to count connections.
        name: Consumer tag and log id; ``<hostname>-<pid>`` when not given.
        reconnect_min_s: Base of the first reconnect delay (doubled after each failure, with
            jitter: see :class:`~lensflow.shared.retry.Backoff`).
        reconnect_max_s: Longest reconnect delay.

    """

    source: IntakeSource = "amqp"

    def __init__(
        self,
        config: AmqpIntakeConfig,
        *,
        metrics: WorkerMetrics | None = None,
        name: str | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.window = config.prefetch
        self.metrics = metrics or WorkerMetrics()
        self._backoff = Backoff(
            initial_s=reconnect_min_s, max_s=max(reconnect_min_s, reconnect_max_s)
        )
        self._generation = Generation()
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None  # guarded by _lock
        self._channel: BlockingChannel | None = None  # used on the connection thread only
        self._on_message: DeliveryHandler | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_message: DeliveryHandler) -> None:
        """Start the connection thread: declare the queue, consume, reconnect with backoff.

        Args:
            on_message: Called on the connection thread for every delivery.

        Raises:
            RuntimeError: If called twice.

        """
        if self._thread is not None:
            raise RuntimeError("expected start() once per intake, but it was called again")
        self._on_message = on_message
        self._thread = threading.Thread(target=self._run, name=f"amqp-{self.name}", daemon=True)
        self._thread.start()
        logger.info(
            "amqp intake start consumer=%s queue=%s prefetch=%d",
            self.name,
            self.config.queue,
            self.window,
        )

    def ack(self, delivery: Delivery) -> None:
        """Ask the connection thread to ack a delivery, unless its connection has dropped.

        Args:
            delivery: A delivery this intake produced.

        Raises:
            TypeError: If the delivery came from another intake.

        """
        token = delivery.token
        if not isinstance(token, _Token):
            raise TypeError(f"expected a delivery of an AmqpIntake, got token {token!r}")
        generation, tag = token.generation, token.tag
        with self._lock:
            connection = self._connection
        if connection is None or generation != self._generation.current:
            logger.info(
                "ack skipped: tag=%s topic=%s came on a past connection", tag, delivery.topic
            )
            return
        try:
            connection.add_callback_threadsafe(functools.partial(self._ack_now, generation, tag))
        except (pika.exceptions.AMQPError, RuntimeError) as err:
            logger.warning("ack tag=%s topic=%s not sent: %r", tag, delivery.topic, err)

    def stop(self) -> None:
        """Send the acks already asked for, close the connection and join its thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("amqp thread of consumer=%s did not stop in time", self.name)
        logger.info("amqp intake stopped consumer=%s", self.name)

    def _run(self) -> None:
        """Consume until stopped; after a failure wait (backoff) and connect again."""
        while not self._stopping.is_set():
            try:
                self._consume()
            except (pika.exceptions.AMQPError, RabbitError, OSError) as err:
                delay = self._backoff.next_delay()
                logger.warning(
                    "amqp consumer=%s down: %r; reconnecting in %.1f s", self.name, err, delay
                )
                self._stopping.wait(delay)
            except Exception:  # the thread must outlive any surprise
                delay = self._backoff.next_delay()
                logger.exception(
                    "amqp consumer=%s failed; reconnecting in %.1f s", self.name, delay
                )
                self._stopping.wait(delay)

    def _consume(self) -> None:
        """One connection's life: declare, set the prefetch, consume until stopped."""
        url = self.config.url.get_secret_value()
        declare_crops_queue(url, queue=self.config.queue, binding_key=self.config.binding_key)
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.config.prefetch)
            generation = self._generation.bump()
            self._channel = channel
            with self._lock:
                self._connection = connection
            cancelled: list[object] = []
            channel.add_on_cancel_callback(cancelled.append)
            channel.basic_consume(
                self.config.queue,
                functools.partial(self._on_delivery, generation),
                auto_ack=False,
                consumer_tag=self.name,
            )
            self._backoff.reset()
            self.metrics.intake_connects.inc()
            logger.info("amqp up consumer=%s generation=%d", self.name, generation)
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=_POLL_S)
                if cancelled:  # queue deleted, or its leader moved: consume it anew
                    raise RabbitError(f"the broker cancelled consumer {self.name}")
            connection.process_data_events(time_limit=0)  # run the acks queued last
        finally:
            with self._lock:
                self._connection = None
            self._generation.bump()
            self._channel = None
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()

    def _on_delivery(
        self,
        generation: int,
        _channel: BlockingChannel,
        method: Basic.Deliver,
        _properties: BasicProperties,
        body: bytes,
    ) -> None:
        """Hand a delivery to the worker (blocking while its queue is full)."""
        try:
            if self._on_message is None:
                return
            delivery = Delivery(
                topic=topic_of(method.routing_key or ""),
                payload=bytes(body),
                redelivered=bool(method.redelivered),
                token=_Token(generation, method.delivery_tag),
            )
            self._on_message(delivery)
        except Exception:
            logger.exception("delivery failed tag=%s", method.delivery_tag)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish to ``amq.topic`` on the connection thread; MQTT subscribers of ``topic`` get it.

        RabbitMQ's MQTT plugin routes ``amq.topic`` with ``/`` turned into ``.``: the edge,
        subscribed over MQTT to ``topic``, receives it.
        """
        with self._lock:
            connection = self._connection
        if connection is None:
            logger.warning("publish to %s not sent: no AMQP connection", topic)
            return
        try:
            connection.add_callback_threadsafe(
                functools.partial(self._publish_now, topic.replace("/", "."), payload)
            )
        except (pika.exceptions.AMQPError, RuntimeError) as err:
            logger.warning("publish to %s not sent: %r", topic, err)

    def _publish_now(self, routing_key: str, payload: bytes) -> None:
        """On the connection thread: publish persistently to ``amq.topic``."""
        channel = self._channel
        if channel is None or not channel.is_open:
            logger.warning("publish to %s not sent: the channel closed", routing_key)
            return
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        channel.basic_publish("amq.topic", routing_key, payload, properties=properties)

    def _ack_now(self, generation: int, tag: int) -> None:
        """On the connection thread: ack ``tag`` if its channel is still the open one."""
        channel = self._channel
        if channel is None or not channel.is_open or generation != self._generation.current:
            logger.info("ack skipped: tag=%s came on a past connection", tag)
            return
        channel.basic_ack(delivery_tag=tag)
