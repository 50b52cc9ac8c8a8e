"""The broker config the project ships sets the same queue limits as the brokers it starts."""

from __future__ import annotations

from pathlib import Path

from lensflow.services.mosquitto import MosquittoConfig
from lensflow.shared.config.cloud import CloudConfig
from lensflow.shared.protocol.envelope import DEFAULT_MAX_MESSAGE_BYTES, MQTT_PACKET_OVERHEAD

KEYS = (
    "max_packet_size",
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "autosave_interval",
    "persistence",
    "sys_interval",
)


def settings(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs if key in KEYS}


def test_shipped_and_started_brokers_queue_alike(repo_root: Path, tmp_path: Path) -> None:
    shipped = settings((repo_root / "configs" / "mosquitto.conf").read_text())
    started = settings(MosquittoConfig(port=1883, data_dir=tmp_path).render())

    assert set(shipped) == set(KEYS)
    assert shipped == started


def test_the_broker_refuses_what_the_protocol_refuses(repo_root: Path) -> None:
    # one size limit: the protocol's crop limit, plus MQTT's headers, is the broker's packet limit
    shipped = settings((repo_root / "configs" / "mosquitto.conf").read_text())

    assert int(shipped["max_packet_size"]) == DEFAULT_MAX_MESSAGE_BYTES + MQTT_PACKET_OVERHEAD
    assert CloudConfig.model_fields["max_message_bytes"].default == DEFAULT_MAX_MESSAGE_BYTES
