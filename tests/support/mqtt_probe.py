"""A real paho client that records what the broker answered: CONNACK, PUBACKs, deliveries.

For broker security tests: a refused publish is a PUBACK reason code (MQTT 5), a refused
connection a CONNACK reason code, a refused read a message that never arrives.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from lensflow.services.mosquitto import MosquittoBroker
from tests.support.brokers import wait_for

NOT_AUTHORIZED = 0x87
"""MQTT 5 reason code 135, "Not authorized" (paho also reports MQTT 3.1.1's CONNACK 5 so)."""

_ids = itertools.count()


class Probe:
    """One MQTT client with its user, its answers from the broker, and what it received.

    Args:
        broker: The broker to connect to.
        user: Broker user name; ``None`` connects anonymously.
        password: The user's password.
        v5: MQTT 5 (reason codes on PUBACK) or MQTT 3.1.1.
        will: A last will (QoS 1), as topic and payload, if any.

    """

    def __init__(
        self,
        broker: MosquittoBroker,
        *,
        user: str | None,
        password: str | None = None,
        v5: bool = True,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{next(_ids)}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: set[int] = set()
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def wait_connack(self, timeout_s: float = 5.0) -> ReasonCode:
        """The broker's answer to CONNECT."""
        if not self._answered.wait(timeout_s) or self.connack is None:
            raise TimeoutError(f"no CONNACK within {timeout_s} s")
        return self.connack

    def connected(self) -> Probe:
        """Wait for the CONNACK and require success."""
        code = self.wait_connack()
        assert not code.is_failure, f"connection refused: {code}"
        return self

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float = 5.0
    ) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code (always success on 3.1.1)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if not wait_for(lambda: info.mid in self.pubacks, timeout_s=timeout_s):
            raise TimeoutError(f"no PUBACK for {topic} within {timeout_s} s")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str, *, timeout_s: float = 5.0) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK.

        Mosquitto 2.0.11 grants any filter to a known user and checks each message against
        the reader's ACL when it delivers it.
        """
        _, mid = self.client.subscribe(topic, qos=1)
        if not wait_for(lambda: mid in self.subacks, timeout_s=timeout_s):
            raise TimeoutError(f"no SUBACK for {topic} within {timeout_s} s")

    def received(self, topic: str) -> list[bytes]:
        """Payloads received on ``topic`` so far."""
        with self._lock:
            return [payload for got, payload in self.messages if got == topic]

    def wait_received(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> bool:
        """Wait until ``payload`` arrived on ``topic``; return whether it did."""
        return wait_for(lambda: payload in self.received(topic), timeout_s=timeout_s)

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crashed client does (its will fires)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, *args: Any) -> None:
        self.connack = args[1]
        self._answered.set()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, *args: Any) -> None:
        self.pubacks[mid] = args[0]

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, *_args: Any) -> None:
        self.subacks.add(mid)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))
