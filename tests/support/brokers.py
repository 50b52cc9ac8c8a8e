"""Real-broker test helpers: a private mosquitto per test and a recording subscriber."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from lensflow.services.mosquitto import MosquittoBroker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A mosquitto on a free loopback port, with persistence in the test's tmp_path."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()  # its state is thrown away with tmp_path: no need to save it


def wait_for(condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout_s`` passed; return its last value."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def payload_key(payload: bytes) -> str:
    """Default key of a test message: the payload up to the first ``|``."""
    return payload.split(b"|", 1)[0].decode()


class Collector:
    """A real paho subscriber that records every (topic, payload, retain) it receives.

    It keeps a persistent MQTT 3.1.1 session (fixed client id, ``clean_session=False``), so
    with broker persistence it misses nothing while the broker restarts: the broker queues
    for it and replays on reconnect. Not MQTT v5: measured on Debian's mosquitto 2.0.11, a v5
    session (session expiry 3600 s, clean start 0 on reconnect) that is connected when the
    broker is stopped with SIGTERM comes back without its queue (245 of 300 queued QoS 1
    messages never arrived), while the same 3.1.1 session gets every message.
    """

    def __init__(
        self,
        broker: MosquittoBroker,
        topic: str,
        *,
        client_id: str = "test-collector",
        key_of: Callable[[bytes], str] = payload_key,
    ) -> None:
        self.topic = topic
        self.key_of = key_of
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=False,
        )
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.connect_async(broker.host, broker.port)

    def start(self, *, timeout_s: float = 5.0) -> Collector:
        """Connect, subscribe and wait for the SUBACK."""
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError(f"collector not subscribed to {self.topic} within {timeout_s} s")
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def payloads(self) -> list[bytes]:
        """Every payload received, duplicates included, in arrival order."""
        with self._lock:
            return [payload for _, payload, _ in self.messages]

    def keys(self) -> set[str]:
        """The distinct keys received."""
        return {self.key_of(payload) for payload in self.payloads()}

    def wait_for_keys(self, count: int, *, timeout_s: float) -> bool:
        """Wait until ``count`` distinct keys arrived; return whether they did."""
        return wait_for(lambda: len(self.keys()) >= count, timeout_s=timeout_s)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
