"""The worker's intake interface: where crop messages come from and how they are acknowledged.

Two implementations ship: :class:`~lensflow.cloud.worker.intake_mqtt.MqttIntake` (a persistent MQTT
session with a stable client id, the embedded default) and
:class:`~lensflow.cloud.worker.intake_amqp.AmqpIntake` (a RabbitMQ quorum queue, the scale-out
path).
Both deliver at least once: a delivery that is not acknowledged comes back, with its
``redelivered`` flag set, after the worker or its connection restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

IntakeSource = Literal["mqtt", "amqp"]


@dataclass(frozen=True)
class Delivery:
    """One message handed over by an intake, to be acknowledged once its results are stored.

    Attributes:
        topic: The MQTT topic it was published on (for AMQP, the routing key turned back
            into a topic: ``lensflow.v1.s.c.crops`` becomes ``lensflow/v1/s/c/crops``).
        payload: The message bytes, as received.
        redelivered: True when the broker says it may have been delivered before (MQTT DUP
            flag, AMQP ``redelivered``).
        token: Opaque handle the intake needs to acknowledge it; only the intake reads it.
        received_at: When the intake received it (aware UTC).

    """

    topic: str
    payload: bytes
    redelivered: bool
    token: object = field(repr=False)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


DeliveryHandler = Callable[[Delivery], object]
"""Called by an intake, on its own thread, for every delivery; it may block (backpressure).
What it returns is ignored."""


class Intake(Protocol):
    """A source of crop messages with manual, after-commit acknowledgement.

    Attributes:
        source: Which kind of intake this is; recorded with dead letters.
        window: How many deliveries the broker hands out before it waits for acks (MQTT
            ReceiveMaximum, AMQP prefetch): a batch larger than it can never fill.
        name: An id for log lines (the MQTT client id, the AMQP consumer tag).

    """

    source: IntakeSource
    window: int
    name: str

    def start(self, on_message: DeliveryHandler) -> None:
        """Connect in the background (retrying with backoff) and deliver to ``on_message``."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge a delivery; thread-safe.

        A delivery from a connection that has since dropped is not acknowledged: the broker
        delivers it again on the new one.
        """
        ...

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish a message (QoS 1) to an MQTT topic through the intake's broker; best effort.

        Receipts go this way. A publish that fails is logged, not raised: the edge sends the
        crop again when its receipt does not come, and the duplicate is cheap.
        """
        ...

    def stop(self) -> None:
        """Send pending acks, disconnect and stop the intake's thread."""
        ...


class Generation:
    """A thread-safe connection counter: an ack token is only valid in its own connection.

    MQTT packet ids and AMQP delivery tags are per connection. After a reconnect the broker
    re-sends what was not acknowledged, so an ack for the old connection must be dropped: the
    same id may already name another message in the new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def bump(self) -> int:
        """Start a new connection; return its number."""
        with self._lock:
            self._value += 1
            return self._value

    @property
    def current(self) -> int:
        """The number of the current connection."""
        with self._lock:
            return self._value

    def call_if_current(self, generation: int, action: Callable[[], object]) -> bool:
        """Run ``action`` if ``generation`` is still the current connection; say whether it ran.

        No new connection can start while ``action`` runs, so an ack queued by it belongs to
        the connection it was checked against.
        """
        with self._lock:
            if generation != self._value:
                return False
            action()
            return True
