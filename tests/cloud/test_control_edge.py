"""The control plane against a real edge agent on a real mosquitto: the database is the truth.

A config assigned through the API reaches the agent and its ack is visible; an agent that
comes back on its local file (its retained config gone) is brought back to the desired
config by the heartbeat it sends; a config the agent rejects shows the agent's reason and is
not re-sent; the agent's online/offline status and heartbeat counters are visible.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lensflow.edge.agent import EdgeAgent, default_loader
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.config.cloud import ControlConfig
from lensflow.shared.config.common import MqttConfig
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.images import sample_image_paths
from lensflow.shared.protocol import config_topic
from tests.support.api import ApiHarness, running_api
from tests.support.brokers import mosquitto, wait_for  # noqa: F401

pytestmark = pytest.mark.integration

SITE, AGENT = "site1", "edge-1"
EDGE_URL = f"/v1/edges/{SITE}/{AGENT}"


def desired_text(model: Path | str, photos: Path, *, fps: float) -> str:
    return (
        f"detector: {{backend: onnxruntime, model: '{model}', conf_threshold: 0.3}}\n"
        "cameras:\n"
        "  - name: lobby\n"
        f"    source: {{type: folder, path: '{photos}', loop: true}}\n"
        f"    fps: {fps}\n"
        "heartbeat_s: 0.3\n"
    )


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sample_image_paths():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def local_config(
    mosquitto: MosquittoBroker,  # noqa: F811
    tmp_path: Path,
    person_onnx: Path,
    photos: Path,
) -> EdgeConfig:
    doc: dict[str, Any] = {
        "site": SITE,
        "agent_id": AGENT,
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "reconnect_max_s": 0.5},
        "detector": {"backend": "onnxruntime", "model": str(person_onnx), "conf_threshold": 0.3},
        "cameras": [{"name": "lobby", "source": {"type": "folder", "path": str(photos)}, "fps": 1}],
        "spool": {"path": str(tmp_path / "spool.sqlite3"), "receipts": False},  # no worker
        "heartbeat_s": 0.3,
        "metrics_port": None,
    }
    return EdgeConfig.model_validate(doc)


@pytest.fixture
def api(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[ApiHarness]:  # noqa: F811
    control = ControlConfig(
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_max_s=0.5),
        resend_after_s=0.5,
        sweep_interval_s=0.2,
        offline_after_s=5,
    )
    with running_api(f"sqlite:///{tmp_path / 'cloud.sqlite3'}", tmp_path, control=control) as h:
        assert wait_for(lambda: h.app.state.control.reconciler.subscribed.is_set(), timeout_s=10)
        yield h


class RunningAgent:
    """An edge agent on a thread."""

    def __init__(self, config: EdgeConfig) -> None:
        self.agent = EdgeAgent(config, load=default_loader, realtime=True)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def edge(api: ApiHarness) -> dict[str, Any]:
    answer = api.get(EDGE_URL, who="viewer")
    return answer.json() if answer.status_code == 200 else {}


def assign(api: ApiHarness, text: str) -> dict[str, Any]:
    created = api.post("/v1/configs", json={"text": text}, who="operator")
    assert created.status_code == 201, created.text
    version = created.json()
    edges = {"edges": [{"site": SITE, "agent_id": AGENT}]}
    assert api.post(f"/v1/configs/{version['id']}/assign", json=edges).status_code == 200
    return version


def clear_retained_config(broker: MosquittoBroker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="clear")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(config_topic(site=SITE, camera=AGENT), b"", qos=1, retain=True).wait_for_publish(
        5
    )
    client.loop_stop()
    client.disconnect()


def test_configs_reach_the_agent_and_are_reconciled_from_its_heartbeat(
    api: ApiHarness,
    local_config: EdgeConfig,
    mosquitto: MosquittoBroker,  # noqa: F811
    person_onnx: Path,
    photos: Path,
) -> None:
    running = RunningAgent(local_config)
    try:
        # the agent's status and heartbeat counters show up
        assert wait_for(lambda: edge(api).get("online") is True, timeout_s=20)
        assert edge(api)["applied_config_hash"] == running.agent.applied_hash
        assert edge(api)["desired"] is None and edge(api)["in_sync"] is None
        assert wait_for(lambda: edge(api)["counters"] != {}, timeout_s=10)

        # a config assigned through the API is applied by the agent, and acked
        version = assign(api, desired_text(person_onnx, photos, fps=3))
        assert wait_for(lambda: edge(api)["in_sync"] is True, timeout_s=20), edge(api)
        desired = edge(api)["desired"]
        assert desired["ack_status"] == "applied"
        assert desired["acked_hash"] == version["config_hash"] == running.agent.applied_hash
        assert running.agent.config.cameras[0].fps == 3
    finally:
        running.stop()
    assert wait_for(lambda: edge(api)["online"] is False, timeout_s=10)
    assert edge(api)["state"] == "offline"

    # the agent comes back on its local file and its retained config is gone: its heartbeat
    # reports the old hash, and the control plane sends the desired config again
    clear_retained_config(mosquitto)
    running = RunningAgent(local_config)
    try:
        assert running.agent.applied_hash != version["config_hash"]
        assert wait_for(
            lambda: edge(api).get("online") and edge(api)["in_sync"] is True, timeout_s=20
        ), edge(api)
        assert running.agent.applied_hash == version["config_hash"]
        assert edge(api)["desired"]["sent_count"] >= 2
    finally:
        running.stop()


def test_a_config_the_agent_rejects_shows_its_reason_and_is_not_resent(
    api: ApiHarness,
    local_config: EdgeConfig,
    photos: Path,
    tmp_path: Path,
) -> None:
    running = RunningAgent(local_config)
    try:
        assert wait_for(lambda: edge(api).get("online") is True, timeout_s=20)
        applied = running.agent.applied_hash
        # valid for the cloud, but the model is not on this edge: the agent rejects it
        assign(api, desired_text(tmp_path / "absent.onnx", photos, fps=2))
        assert wait_for(lambda: edge(api)["desired"]["ack_status"] == "rejected", timeout_s=20), (
            edge(api)
        )
        desired = edge(api)["desired"]
        assert "absent.onnx" in desired["error"]
        assert edge(api)["in_sync"] is False
        assert running.agent.applied_hash == applied  # the previous config stays in force
        sends = desired["sent_count"]
        assert not wait_for(lambda: edge(api)["desired"]["sent_count"] > sends, timeout_s=2)
        assert running.thread.is_alive()
    finally:
        running.stop()
