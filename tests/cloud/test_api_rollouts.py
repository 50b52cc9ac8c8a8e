"""Canary rollouts over the API: states from acks, health from heartbeats, promote, rollback.

The control plane's MQTT side is not running here: the acks and heartbeats it would record
are given to the rollout service directly (``test_model_delivery.py`` runs the real parts).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lensflow.cloud.control.configs import payload_hash
from lensflow.cloud.control.rollouts import RolloutService
from lensflow.shared.protocol import ConfigAck, StatusMessage
from tests.support.api import ApiHarness, running_api

SITE = "site1"
CONFIG = (
    "detector: {{backend: onnxruntime, model: 'models/{name}.onnx'}}\n"
    "cameras: [{{name: lobby, source: {{type: folder, path: photos}}}}]\n"
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    with running_api(f"sqlite:///{tmp_path / 'api.sqlite3'}", tmp_path) as harness:
        yield harness


def service(api: ApiHarness) -> RolloutService:
    rollouts: RolloutService = api.app.state.control.rollouts
    return rollouts


def version(api: ApiHarness, name: str) -> dict[str, Any]:
    answer = api.post("/v1/configs", json={"text": CONFIG.format(name=name)}, who="operator")
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def heartbeat(
    api: ApiHarness, agent: str, config_hash: str, *, at: datetime, frames: int, dets: int
) -> None:
    """A status as the control plane records it: the edge row and the heartbeat history."""
    status = StatusMessage(
        state="online",
        agent_version="1",
        applied_config_hash=config_hash,
        counters={"frames": frames, "detections": dets, "detect_errors": 0, "source_failures": 0},
        model_sha256="ab" * 32,
        timestamp=at,
    )
    api.results.upsert_edge_status(site=SITE, agent_id=agent, status=status)
    service(api).record_heartbeat(site=SITE, agent_id=agent, status=status)


def assign(api: ApiHarness, version_id: int, *agents: str) -> None:
    edges = [{"site": SITE, "agent_id": agent} for agent in agents]
    answer = api.post(f"/v1/configs/{version_id}/assign", json={"edges": edges}, who="operator")
    assert answer.status_code == 200, answer.text


@pytest.fixture
def fleet(api: ApiHarness) -> tuple[dict[str, Any], dict[str, Any]]:
    """Three edges of site1 on version ``old`` for 10 s at 5 fps, 2 detections a frame."""
    old, new = version(api, "old"), version(api, "new")
    assign(api, old["id"], "edge-1", "edge-2", "edge-3")
    start = datetime.now(UTC) - timedelta(seconds=20)
    for agent in ("edge-1", "edge-2", "edge-3"):
        for second in (0, 10):
            heartbeat(api, agent, old["config_hash"], at=start + timedelta(seconds=second),
                      frames=50 * second // 10, dets=100 * second // 10)  # fmt: skip
    return old, new


def start(api: ApiHarness, new: dict[str, Any], agent: str = "edge-1", **body: Any) -> Any:
    return api.post(
        "/v1/rollouts",
        json={"config_version_id": new["id"], "canary": {"site": SITE, "agent_id": agent}} | body,
        who="operator",
    )


def test_a_canary_applied_shows_its_health_against_the_previous_version_and_promotes(
    api: ApiHarness, fleet: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    old, new = fleet
    # given a rollout on edge-1: only it is assigned the new version
    created = start(api, new)
    assert created.status_code == 201, created.text
    rollout = created.json()
    assert [(e["agent_id"], e["state"], e["previous_version_id"]) for e in rollout["edges"]] == [
        ("edge-1", "pending", old["id"])
    ]
    assert api.get(f"/v1/edges/{SITE}/edge-2").json()["desired"]["config_version_id"] == old["id"]

    # when it downloads, applies and runs 10 s at 4 fps, 1 detection a frame
    rollouts = service(api)
    rollouts.record_ack(
        site=SITE, agent_id="edge-1", ack=ConfigAck(hash=new["config_hash"], status="downloading")
    )
    assert api.get(f"/v1/rollouts/{rollout['id']}").json()["edges"][0]["state"] == "downloading"
    rollouts.record_ack(
        site=SITE, agent_id="edge-1", ack=ConfigAck(hash=new["config_hash"], status="applied")
    )
    now = datetime.now(UTC)
    heartbeat(api, "edge-1", new["config_hash"], at=now, frames=50, dets=100)
    heartbeat(
        api, "edge-1", new["config_hash"], at=now + timedelta(seconds=10), frames=90, dets=140
    )

    # then its state and health say so, against the same edge on the old version
    got = api.get(f"/v1/rollouts/{rollout['id']}", who="viewer").json()
    canary = got["edges"][0]
    assert canary["state"] == "applied" and canary["applied_at"]
    assert canary["health"]["current"] | {"seconds": 10.0} == {
        "heartbeats": 2, "seconds": 10.0, "frames": 40, "fps": 4.0,
        "detections_per_frame": 1.0, "errors": 0,
    }  # fmt: skip
    assert canary["health"]["previous"]["fps"] == 5.0
    assert canary["health"]["previous"]["detections_per_frame"] == 2.0

    # and promote assigns the rest of the site, remembering what each had
    promoted = api.post(f"/v1/rollouts/{rollout['id']}/promote", who="operator")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["state"] == "promoted"
    edges = {e["agent_id"]: e for e in promoted.json()["edges"]}
    assert set(edges) == {"edge-1", "edge-2", "edge-3"}
    assert (
        edges["edge-2"]["role"] == "promoted"
        and edges["edge-2"]["previous_version_id"] == old["id"]
    )
    for agent in ("edge-2", "edge-3"):
        desired = api.get(f"/v1/edges/{SITE}/{agent}").json()["desired"]
        assert desired["config_version_id"] == new["id"]

    # rollback re-assigns the previous version to every touched edge
    back = api.post(f"/v1/rollouts/{rollout['id']}/rollback", who="operator")
    assert back.status_code == 200 and back.json()["state"] == "rolled_back"
    for agent in ("edge-1", "edge-2", "edge-3"):
        desired = api.get(f"/v1/edges/{SITE}/{agent}").json()["desired"]
        assert desired["config_version_id"] == old["id"]
    again = api.post(f"/v1/rollouts/{rollout['id']}/rollback", who="operator")
    assert again.status_code == 409 and again.json()["error"]["code"] == "rollout_finished"


def test_a_rejected_canary_cannot_be_promoted(
    api: ApiHarness, fleet: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _old, new = fleet
    rollout = start(api, new).json()
    ack = ConfigAck(hash="sha256:" + "0" * 64, status="rejected", error="bundle: bad hash")
    assert service(api).record_ack(site=SITE, agent_id="edge-1", ack=ack) == 0  # another config
    ack = ConfigAck(
        hash=payload_hash(new["text"]),
        status="rejected",
        error="bundle: bad hash",
    )
    assert service(api).record_ack(site=SITE, agent_id="edge-1", ack=ack) == 1

    answer = api.post(f"/v1/rollouts/{rollout['id']}/promote", who="operator")

    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "canary_not_applied"
    assert error["message"] == (
        f"expected canary site1/edge-1 to have applied config version {new['id']}, "
        "got rejected: bundle: bad hash"
    )
    assert api.get(f"/v1/edges/{SITE}/edge-2").json()["desired"]["config_version_id"] != new["id"]


@pytest.mark.parametrize(
    ("who", "body", "status", "code"),
    [
        ("viewer", {}, 403, "forbidden"),  # a viewer may read, not roll out
        ("operator", {"config_version_id": 999}, 404, "unknown_config"),
        ("operator", {"canary": {"site": SITE, "agent_id": "nobody"}}, 404, "unknown_edge"),
        ("operator", {"scope": "planet"}, 422, "invalid_request"),
    ],
)
def test_refused_rollouts_say_why(
    api: ApiHarness,
    fleet: tuple[dict[str, Any], dict[str, Any]],
    who: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    _old, new = fleet
    request = {"config_version_id": new["id"], "canary": {"site": SITE, "agent_id": "edge-1"}}
    answer = api.post("/v1/rollouts", json=request | body, who=who)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_an_edge_in_an_unfinished_rollout_is_not_a_second_canary(
    api: ApiHarness, fleet: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _old, new = fleet
    first = start(api, new).json()
    answer = start(api, new)
    assert answer.status_code == 409
    assert answer.json()["error"]["message"] == (
        f"expected site1/edge-1 in no unfinished rollout, got rollout {first['id']} "
        "(promote or roll it back first)"
    )
    assert api.get("/v1/rollouts/999").status_code == 404
    assert api.post(f"/v1/rollouts/{first['id']}/promote", who="viewer").status_code == 403
