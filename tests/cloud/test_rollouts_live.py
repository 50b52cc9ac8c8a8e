"""Canary rollouts on real parts: mosquitto, the API over HTTP, two running agents.

A pushed COCO SSD bundle goes to one canary edge first (its state reaches ``applied`` with
health figures from its heartbeats while the other edge keeps the previous version), then
promote assigns it to the other edge, then rollback restores the previous model's sha256 on
both. A canary given a corrupt bundle shows ``rejected`` and promote is refused with 409.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lensflow.cloud.storage.bundles import BundleStore
from lensflow.services.mosquitto import MosquittoBroker
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.model_bundle import sha256_file
from lensflow.shared.protocol import config_ack_topic
from tests.cloud.test_control_edge import RunningAgent, api, photos  # noqa: F401
from tests.cloud.test_model_delivery import artifact, desired, push, served
from tests.support.api import ApiHarness
from tests.support.brokers import mosquitto, wait_for  # noqa: F401
from tests.support.mqtt_probe import Probe

pytestmark = pytest.mark.integration

SITE, AGENTS = "site1", ("edge-1", "edge-2")


def local(
    agent: str, base: str, token: str, broker: MosquittoBroker, tmp: Path, model: Path
) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "site": SITE,
            "agent_id": agent,
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_max_s": 0.5},
            "detector": {"backend": "litert", "model": str(model)},
            "cameras": [{"name": "lobby", "source": {"type": "folder", "path": str(tmp)}}],
            "spool": {"path": str(tmp / f"{agent}.sqlite3"), "receipts": False},
            "registry": {"url": base, "key": token, "cache": str(tmp / agent), "retry_for_s": 2},
            "heartbeat_s": 0.3,
            "metrics_port": None,
        }
    )


@pytest.fixture
def agents(
    api: ApiHarness,  # noqa: F811
    mosquitto: MosquittoBroker,  # noqa: F811
    ssd_coco_tflite: Path,
    tmp_path: Path,
) -> Iterator[tuple[str, dict[str, RunningAgent]]]:
    with served(api.app) as base:
        running = {
            agent: RunningAgent(
                local(agent, base, api.tokens["viewer"], mosquitto, tmp_path, ssd_coco_tflite)
            )
            for agent in AGENTS
        }
        try:
            yield base, running
        finally:
            for agent in running.values():
                agent.stop()


def version(api: ApiHarness, text: str) -> dict[str, Any]:  # noqa: F811
    created = api.post("/v1/configs", json={"text": text}, who="operator")
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def edge_of(api: ApiHarness, agent: str) -> dict[str, Any]:  # noqa: F811
    result: dict[str, Any] = api.get(f"/v1/edges/{SITE}/{agent}", who="viewer").json()
    return result


def rollout(api: ApiHarness, rollout_id: int) -> dict[str, Any]:  # noqa: F811
    result: dict[str, Any] = api.get(f"/v1/rollouts/{rollout_id}", who="viewer").json()
    return result


def states(api: ApiHarness, rollout_id: int) -> dict[str, str]:  # noqa: F811
    return {e["agent_id"]: e["state"] for e in rollout(api, rollout_id)["edges"]}


def test_canary_promote_and_rollback_on_running_agents(
    api: ApiHarness,  # noqa: F811
    mosquitto: MosquittoBroker,  # noqa: F811
    agents: tuple[str, dict[str, RunningAgent]],
    photos: Path,  # noqa: F811
    ssd_coco_tflite: Path,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    base, running = agents
    acks = Probe(mosquitto, user=None)
    acks.subscribe(config_ack_topic(site=SITE, camera="edge-1"))
    file_sha = sha256_file(ssd_coco_tflite)
    # given both edges on version A (the model file), with heartbeats on it
    before = version(api, desired(str(ssd_coco_tflite), photos).replace("fps: 5", "fps: 2"))
    edges = {"edges": [{"site": SITE, "agent_id": agent} for agent in AGENTS]}
    assert api.post(f"/v1/configs/{before['id']}/assign", json=edges).status_code == 200
    for agent in AGENTS:
        assert wait_for(lambda a=agent: edge_of(api, a).get("in_sync") is True, timeout_s=20)
    for agent in AGENTS:  # a few frames on A: the figures the canary is compared with
        assert wait_for(lambda a=agent: edge_of(api, a)["counters"]["frames"] >= 3, timeout_s=10)
    good = push(artifact(tmp_path, model_cache, "coco-bundle"), base, api.tokens["operator"])
    new = version(api, desired(f"sha256:{good}", photos).replace("fps: 5", "fps: 2"))

    # when version B goes to edge-1 as a canary
    body = {"config_version_id": new["id"], "canary": {"site": SITE, "agent_id": "edge-1"}}
    created = api.post("/v1/rollouts", json=body, who="operator")
    assert created.status_code == 201, created.text
    rollout_id = created.json()["id"]

    # then edge-1 downloads and applies it, and its health figures come from its heartbeats
    assert wait_for(lambda: states(api, rollout_id) == {"edge-1": "applied"}, timeout_s=30)
    healthy = lambda: rollout(api, rollout_id)["edges"][0]["health"]["current"] or {}  # noqa: E731
    assert wait_for(lambda: healthy().get("frames", 0) >= 2, timeout_s=10)
    canary = rollout(api, rollout_id)["edges"][0]
    current, previous = canary["health"]["current"], canary["health"]["previous"]
    assert current["fps"] > 0 and current["detections_per_frame"] > 0 and current["errors"] == 0
    assert previous["fps"] > 0 and previous["detections_per_frame"] > 0
    assert canary["model_sha256"] == good and canary["previous_model_sha256"] == file_sha
    statuses = [
        json.loads(p)["status"] for p in acks.received(config_ack_topic(site=SITE, camera="edge-1"))
    ]
    assert "downloading" in statuses and statuses[-1] == "applied"
    assert edge_of(api, "edge-2")["desired"]["config_version_id"] == before["id"]
    print(f"canary health: now {current}, before {previous}")
    assert running["edge-2"].agent.model_sha256 == file_sha

    # promote: the rest of the site gets it
    promoted = api.post(f"/v1/rollouts/{rollout_id}/promote", who="operator")
    assert promoted.status_code == 200, promoted.text
    want = {"edge-1": "applied", "edge-2": "applied"}
    assert wait_for(lambda: states(api, rollout_id) == want, timeout_s=30)
    assert wait_for(lambda: running["edge-2"].agent.model_sha256 == good, timeout_s=5)

    # rollback: every touched edge runs the previous model's sha256 again
    assert api.post(f"/v1/rollouts/{rollout_id}/rollback", who="operator").status_code == 200
    for agent in AGENTS:
        assert wait_for(lambda a=agent: running[a].agent.model_sha256 == file_sha, timeout_s=20)
        assert wait_for(lambda a=agent: edge_of(api, a)["in_sync"] is True, timeout_s=10)
    models = lambda: {e["agent_id"]: e["model_sha256"] for e in rollout(api, rollout_id)["edges"]}  # noqa: E731
    assert wait_for(lambda: models() == dict.fromkeys(AGENTS, file_sha), timeout_s=5), models()

    # a canary given a corrupt bundle is rejected, and promote is refused
    corrupt = push(artifact(tmp_path, model_cache, "coco-corrupt"), base, api.tokens["operator"])
    stored = BundleStore(tmp_path / "crops").path(corrupt)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    bad = version(api, desired(f"sha256:{corrupt}", photos).replace("fps: 5", "fps: 2"))
    body["config_version_id"] = bad["id"]
    second = api.post("/v1/rollouts", json=body, who="operator").json()["id"]
    assert wait_for(lambda: states(api, second) == {"edge-1": "rejected"}, timeout_s=30)
    refused = api.post(f"/v1/rollouts/{second}/promote", who="operator")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "canary_not_applied"
    assert error["message"].startswith(
        f"expected canary site1/edge-1 to have applied config version {bad['id']}, got rejected: "
    )
    assert "downloaded" in error["message"]
    assert running["edge-1"].agent.model_sha256 == file_sha  # the old model keeps running
