"""The spool-backed MQTT publisher against a real mosquitto on a free port.

Every test checks delivery by key (the crop id), so re-sends after a reconnect (allowed:
at-least-once) never hide a loss.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from lensflow.edge.publisher import MqttPublisher
from lensflow.edge.spool import Spool
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.config.common import MqttConfig
from lensflow.shared.protocol import (
    StatusMessage,
    config_topic,
    crops_topic,
    decode_status,
    encode_status,
    status_topic,
)
from tests.support.brokers import Collector, wait_for

pytestmark = pytest.mark.integration

CROPS = crops_topic(site="site1", camera="cam1")
STATUS = status_topic(site="site1", camera="agent1")
ROOT = Path(__file__).resolve().parents[2]


def status(state: Literal["online", "offline"]) -> bytes:
    message = StatusMessage(state=state, agent_version="0.1.0", timestamp=datetime.now(UTC))
    return encode_status(message)


def mqtt_config(broker_port: int, protocol: Literal["v5", "v311"] = "v5") -> MqttConfig:
    # short backoff and keepalive so a restarted broker is found again within a second
    return MqttConfig(
        port=broker_port,
        protocol=protocol,
        keepalive_s=5,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


def payload(key: str, size: int = 2_000) -> bytes:
    return key.encode() + b"|" + b"x" * size


PublisherFactory = Callable[..., MqttPublisher]


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[PublisherFactory]:
    """Start publishers on a spool file in tmp_path; stop them at teardown."""
    started: list[MqttPublisher] = []

    def make(
        port: int, *, protocol: Literal["v5", "v311"] = "v5", spool_file: str = "spool.db"
    ) -> MqttPublisher:
        publisher = MqttPublisher(
            mqtt_config(port, protocol),
            spool=Spool(tmp_path / spool_file, max_bytes=100_000_000),
            will_topic=STATUS,
            will_payload=status("offline"),
            client_id=f"edge-test-{len(started)}",
            inflight=20,
        )
        publisher.start()
        started.append(publisher)
        return publisher

    yield make
    for publisher in started:
        publisher.stop(drain_timeout_s=0)


def enqueue(publisher: MqttPublisher, keys: list[str]) -> None:
    for key in keys:
        publisher.enqueue(CROPS, payload(key), key=key)


def test_every_message_arrives_and_the_spool_empties(
    mosquitto: MosquittoBroker, make_publisher: PublisherFactory
) -> None:
    keys = [f"k{i}" for i in range(200)]
    with Collector(mosquitto, CROPS) as collector:
        publisher = make_publisher(mosquitto.port)

        enqueue(publisher, keys)

        assert collector.wait_for_keys(200, timeout_s=20)
        assert collector.keys() == set(keys)
        assert publisher.wait_drained(5)
        stats = publisher.stats()
        assert (stats["acked"], stats["spool_depth"], stats["inflight"]) == (200, 0, 0)


@pytest.mark.parametrize(
    "outage_s",
    [
        3.0,  # the everyday case, kept short for the suite
        pytest.param(10.0, marks=pytest.mark.slow),  # a long outage: backoff reaches its cap
    ],
)
def test_broker_outage_mid_run_loses_nothing(
    mosquitto: MosquittoBroker, make_publisher: PublisherFactory, outage_s: float
) -> None:
    # given a producer enqueueing steadily, before, during and after the outage
    with Collector(mosquitto, CROPS) as collector:
        publisher = make_publisher(mosquitto.port)
        produced: list[str] = []
        done = threading.Event()

        def produce() -> None:
            for i in itertools.count():
                if done.wait(0.005):
                    return
                produced.append(f"k{i}")
                publisher.enqueue(CROPS, payload(f"k{i}"), key=f"k{i}")

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            assert wait_for(lambda: len(collector.keys()) >= 20, timeout_s=10)

            # when the broker is stopped (SIGTERM: its persistence is saved) and restarted
            mosquitto.stop()
            assert wait_for(lambda: not publisher.connected, timeout_s=5)
            time.sleep(outage_s)
            backlog = publisher.stats()["spool_depth"]
            mosquitto.start()
            time.sleep(0.5)
        finally:
            done.set()
            producer.join()

        # then every key arrives and the spool drains
        assert backlog > 0
        arrived = collector.wait_for_keys(len(produced), timeout_s=30)
        missing = sorted(set(produced) - collector.keys(), key=lambda k: int(k[1:]))
        assert arrived, f"{len(missing)} missing, first {missing[:5]}; {publisher.stats()}"
        assert collector.keys() == set(produced)
        assert publisher.wait_drained(10)
        assert publisher.stats()["reconnects"] >= 1


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lensflow.edge.publisher import MqttPublisher
    from lensflow.edge.spool import Spool
    from lensflow.shared.config.common import MqttConfig

    mode, port, spool_file, count, marker = sys.argv[1:6]
    will = Path(sys.argv[6]).read_bytes()
    config = MqttConfig(port=int(port), keepalive_s=5, reconnect_min_s=0.1, reconnect_max_s=0.5)
    publisher = MqttPublisher(
        config,
        spool=Spool(spool_file, max_bytes=100_000_000),
        will_topic={status!r},
        will_payload=will,
        client_id="edge-child",
    )
    publisher.start()
    if mode == "spool":
        for i in range(int(count)):
            key = f"k{{i}}"
            publisher.enqueue({crops!r}, key.encode() + b"|" + b"x" * 2000, key=key)
    else:
        publisher.publish_status(b"ONLINE")
    Path(marker).touch()
    time.sleep(600)
""").format(status=STATUS, crops=CROPS)


def start_child(tmp_path: Path, *, mode: str, port: int, count: int = 0) -> subprocess.Popen[bytes]:
    """Run a publisher process; return once it spooled or published, as ``mode`` says."""
    marker, will = tmp_path / f"{mode}.ready", tmp_path / "will.bin"
    will.write_bytes(status("offline"))
    args = [mode, str(port), str(tmp_path / "spool.db"), str(count), str(marker), str(will)]
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if not wait_for(marker.exists, timeout_s=20):
        process.kill()
        raise AssertionError(f"child publisher ({mode}) did not get ready; rc={process.poll()}")
    return process


def sigkill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def test_spooled_messages_survive_sigkill_of_the_publisher(
    tmp_path: Path, make_publisher: PublisherFactory
) -> None:
    # given a publisher process that spooled 300 crops while the broker was down, then SIGKILLed
    broker = MosquittoBroker(tmp_path / "mosquitto")  # not started yet: nothing can drain
    sigkill(start_child(tmp_path, mode="spool", port=broker.port, count=300))
    try:
        # when the broker comes up and a new publisher opens the same spool file
        broker.start()
        with Collector(broker, CROPS) as collector:
            publisher = make_publisher(broker.port, spool_file="spool.db")

            # then all 300 arrive and the spool drains
            assert collector.wait_for_keys(300, timeout_s=20)
            assert collector.keys() == {f"k{i}" for i in range(300)}
            assert publisher.wait_drained(10)
    finally:
        broker.kill()


def test_sigkilled_publisher_leaves_retained_offline_status(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    # given a publisher process that announced itself online
    with Collector(mosquitto, STATUS, client_id="status-watcher") as watcher:
        child = start_child(tmp_path, mode="online", port=mosquitto.port)
        assert wait_for(lambda: b"ONLINE" in watcher.payloads(), timeout_s=10)

        # when it is SIGKILLed
        sigkill(child)

        # then the broker publishes its last will: offline
        assert wait_for(lambda: watcher.payloads()[-1] != b"ONLINE", timeout_s=10)
    assert decode_status(watcher.payloads()[-1]).state == "offline"
    # and a subscriber arriving later gets it as the retained status
    with Collector(mosquitto, STATUS, client_id="late-watcher") as late:
        assert wait_for(lambda: len(late.messages) == 1, timeout_s=5)
        _, retained, retain_flag = late.messages[0]
    assert retain_flag
    assert decode_status(retained).state == "offline"


def test_mqtt_311_publishes_too(
    mosquitto: MosquittoBroker, make_publisher: PublisherFactory
) -> None:
    keys = [f"k{i}" for i in range(50)]
    with Collector(mosquitto, CROPS) as collector:
        publisher = make_publisher(mosquitto.port, protocol="v311")

        enqueue(publisher, keys)

        assert collector.wait_for_keys(50, timeout_s=10)
        assert publisher.wait_drained(5)


def test_clean_stop_publishes_the_final_offline_status(
    mosquitto: MosquittoBroker, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(mosquitto.port)
    publisher.publish_status(status("online"))
    assert wait_for(lambda: publisher.connected, timeout_s=5)

    assert publisher.stop(drain_timeout_s=1) is True

    with Collector(mosquitto, STATUS, client_id="late-watcher") as late:
        assert wait_for(lambda: len(late.messages) == 1, timeout_s=5)
    assert decode_status(late.messages[0][1]).state == "offline"


def test_subscription_is_renewed_after_a_broker_restart(
    mosquitto: MosquittoBroker, make_publisher: PublisherFactory
) -> None:
    topic = config_topic(site="site1", camera="agent1")
    received: list[bytes] = []
    publisher = make_publisher(mosquitto.port)
    publisher.subscribe(topic, received.append)
    assert wait_for(lambda: publisher.connected, timeout_s=5)

    mosquitto.restart()
    assert wait_for(lambda: publisher.stats()["reconnects"] == 1, timeout_s=10)
    time.sleep(0.3)  # the SUBACK of the renewed subscription
    sender = make_publisher(mosquitto.port, spool_file="sender.db")
    sender.enqueue(topic, b"config-v2", key="config-v2")

    assert wait_for(lambda: received == [b"config-v2"], timeout_s=5)


@pytest.mark.parametrize(
    ("topic", "size"),
    [
        ("", 10),  # empty topic
        ("lensflow/v1/+/cam/crops", 10),  # a filter, not a topic
        ("lensflow/v1/site/#", 10),  # a filter, not a topic
    ],
)
def test_unpublishable_messages_are_refused_before_the_spool(
    tmp_path: Path, topic: str, size: int
) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=1_000_000)
    publisher = MqttPublisher(
        mqtt_config(1), spool=spool, will_topic=STATUS, will_payload=b"off", client_id="x"
    )

    with pytest.raises(ValueError, match="expected a concrete topic"):
        publisher.enqueue(topic, b"x" * size, key="k")
    assert len(spool) == 0
