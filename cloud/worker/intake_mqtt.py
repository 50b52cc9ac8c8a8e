"""MQTT intake: a persistent session with a stable client id, acknowledged after commit.

The session (``clean_session=False`` on MQTT 3.1.1; on MQTT 5 ``clean_start=False`` with a
``SessionExpiryInterval``) makes the broker keep the subscription and queue crops while the
worker is away; ``manual_ack=True`` makes paho hold each PUBACK until :meth:`MqttIntake.ack`,
so a crop whose results were not committed is sent again, with DUP set, when the same client
id reconnects.

Protocol (``intake.mqtt.protocol``), measured on Debian's mosquitto 2.0.11:

- Both protocols store every crop exactly once after a worker SIGKILL and a restart with the
  same client id, and after a broker restart (SIGTERM) under a busy or a stopped worker.
- MQTT 5 must never connect with ``clean_start=1``, not even the first time (paho's default
  ``MQTT_CLEAN_START_FIRST_ONLY`` does): mosquitto 2.0.11 does not persist a session whose
  connection began clean, whatever its expiry, so a broker restart loses the session and
  its queue (0 of 150 crops came back; with ``clean_start=0`` from the first connect, 150 of
  150). This intake always connects with ``clean_start=0``.
- The in-flight window is ``ReceiveMaximum`` on MQTT 5, whatever the broker's
  ``max_inflight_messages``. MQTT 3.1.1 has no way for a client to state it: the window is
  the broker's ``max_inflight_messages`` (mosquitto's default is 20; set it at least to
  ``receive_maximum``). paho's ``max_inflight_messages_set`` only bounds outgoing messages.
- MQTT 5 sessions expire (``session_expiry_s``); mosquitto keeps a 3.1.1 session forever
  unless ``persistent_client_expiration`` is set.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lensflow.cloud.worker.intake import Delivery, DeliveryHandler, Generation, IntakeSource
from lensflow.cloud.worker.metrics import WorkerMetrics
from lensflow.shared.config.cloud import MqttIntake as MqttIntakeConfig
from lensflow.shared.mqtt import make_client

logger = logging.getLogger(__name__)

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
"""Where mosquitto publishes how many messages it dropped (queue overflow, among others)."""


@dataclass(frozen=True)
class _Token:
    """What acknowledges an MQTT delivery: its connection, packet id and QoS."""

    generation: int
    mid: int
    qos: int


class MqttIntake:
    """Crops from a persistent MQTT session, acknowledged one by one after commit.

    Args:
        config: The ``intake`` section of the cloud config (``type: mqtt``).
        metrics: Where to count connections and the broker's dropped messages.

    Attributes:
        subscribed: Set at the first SUBACK: crops published from then on reach the session.

    """

    source: IntakeSource = "mqtt"

    def __init__(self, config: MqttIntakeConfig, *, metrics: WorkerMetrics | None = None) -> None:
        self.config = config
        self.name = config.client_id
        self.window = config.receive_maximum
        self.metrics = metrics or WorkerMetrics()
        self._generation = Generation()
        self._on_message: DeliveryHandler | None = None
        self._stopping = threading.Event()
        self.subscribed = threading.Event()
        self._ever_connected = False
        self._client = self._build_client()

    @property
    def v5(self) -> bool:
        """Whether the session speaks MQTT 5 (else 3.1.1)."""
        return self.config.mqtt.protocol == "v5"

    def _build_client(self) -> mqtt.Client:
        """Create the paho client: protocol, session, manual acks, credentials, TLS, backoff."""
        client = make_client(
            self.config.mqtt, client_id=self.config.client_id, persistent=True, manual_ack=True
        )
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message, client.on_subscribe = self._on_crop, self._on_subscribe
        client.message_callback_add(DROPPED_TOPIC, self._on_dropped)
        return client

    def _connect_properties(self) -> Properties | None:
        """MQTT 5 CONNECT properties: how long the session outlives us, our in-flight window."""
        if not self.v5:
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.config.session_expiry_s
        properties.ReceiveMaximum = self.config.receive_maximum
        return properties

    def start(self, on_message: DeliveryHandler) -> None:
        """Connect in the background (paho retries with backoff) and deliver crops.

        Args:
            on_message: Called on paho's network thread for every crop message.

        Raises:
            RuntimeError: If called twice.

        """
        if self._on_message is not None:
            raise RuntimeError("expected start() once per intake, but it was called again")
        self._on_message = on_message
        cfg = self.config.mqtt
        self._client.connect_async(
            cfg.host,
            cfg.port,
            keepalive=cfg.keepalive_s,
            # MQTT 5: never a clean start, not even the first time (see the module docstring);
            # MQTT 3.1.1 takes the session flag from the client (clean_session=False)
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties(),
        )
        self._client.loop_start()
        logger.info(
            "mqtt intake start client_id=%s broker=%s:%s protocol=%s window=%d topic=%s",
            self.name,
            cfg.host,
            cfg.port,
            cfg.protocol,
            self.window,
            self.config.topic,
        )

    def ack(self, delivery: Delivery) -> None:
        """Send the PUBACK of a delivery, unless its connection has dropped since.

        Args:
            delivery: A delivery this intake produced.

        Raises:
            TypeError: If the delivery came from another intake.

        """
        token = delivery.token
        if not isinstance(token, _Token):
            raise TypeError(f"expected a delivery of an MqttIntake, got token {token!r}")
        if token.qos == 0:
            return  # a QoS 0 message has no acknowledgement
        results: list[MQTTErrorCode] = []
        sent = self._generation.call_if_current(
            token.generation, lambda: results.append(self._client.ack(token.mid, token.qos))
        )
        if not sent:
            logger.info(
                "ack skipped: mid=%s topic=%s came on a past connection", token.mid, delivery.topic
            )
        elif results[0] != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.warning(
                "ack mid=%s topic=%s not sent (rc=%s)", token.mid, delivery.topic, results[0]
            )

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 on this intake's connection (paho queues it while offline)."""
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.warning("publish to %s not sent (rc=%s)", topic, info.rc)

    def stop(self) -> None:
        """Disconnect (after the PUBACKs already queued) and stop the network thread."""
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("mqtt intake stopped client_id=%s", self.name)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        """Start a new ack generation and (re)subscribe; warn when the session was lost."""
        try:
            if reason.is_failure:
                logger.error("broker refused client_id=%s: %s", self.name, reason)
                return
            generation = self._generation.bump()
            if self._ever_connected and not flags.session_present:
                logger.warning(
                    "client_id=%s reconnected without its session: crops queued for it while "
                    "it was away are lost (broker restarted or session expired)",
                    self.name,
                )
            self._ever_connected = True
            self.metrics.intake_connects.inc()
            client.subscribe([(self.config.topic, 1), (DROPPED_TOPIC, 0)])
            logger.info(
                "mqtt up client_id=%s session_present=%s generation=%d",
                self.name,
                bool(flags.session_present),
                generation,
            )
        except Exception:
            logger.exception("on_connect failed client_id=%s", self.name)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: Any, _props: Any
    ) -> None:
        """Log the SUBACK; crops published from now on reach this session."""
        granted = [str(reason) for reason in reasons]
        logger.info(
            "mqtt subscribed client_id=%s topic=%s granted=%s",
            self.name,
            self.config.topic,
            granted,
        )
        self.subscribed.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        """Log a failed connection attempt (paho retries with backoff)."""
        cfg = self.config.mqtt
        logger.warning("mqtt connect to %s:%s failed client_id=%s", cfg.host, cfg.port, self.name)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        """Void the acks of this connection: its unacked crops come back on the next one."""
        self._generation.bump()
        log = logger.info if self._stopping.is_set() else logger.warning
        log("mqtt down (%s) client_id=%s", reason, self.name)

    def _on_crop(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Hand a crop message to the worker (blocking while its queue is full)."""
        try:
            if self._on_message is None:
                return
            delivery = Delivery(
                topic=message.topic,
                payload=bytes(message.payload),
                redelivered=bool(message.dup),
                token=_Token(self._generation.current, message.mid, message.qos),
            )
            if message.qos == 0:  # nothing to acknowledge; a QoS 0 crop is not at-least-once
                logger.warning("crop on topic=%s arrived with QoS 0", message.topic)
            self._on_message(delivery)
        except Exception:
            logger.exception("delivery failed topic=%s mid=%s", message.topic, message.mid)

    def _on_dropped(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Export the broker's dropped-message count."""
        try:
            self.metrics.broker_dropped.set(int(message.payload))
        except ValueError:
            logger.warning(
                "expected an integer on %s, got %r", DROPPED_TOPIC, bytes(message.payload)[:32]
            )
