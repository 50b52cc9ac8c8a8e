"""Edge configs: validation as the agents do it, versions, assignments, acks and what is due.

On SQLite and PostgreSQL; the MQTT side (a real agent) is in test_control_edge.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from lensflow.cloud.control import ConfigService, validate_edge_config
from lensflow.cloud.control.configs import payload_hash
from lensflow.cloud.storage import ResultStore, create_engine_for, migrate
from lensflow.cloud.storage.models import utcnow
from lensflow.edge.remote_config import parse_pushed_config
from lensflow.shared.config.edge import EdgeConfig, config_hash
from lensflow.shared.errors import ConfigError
from lensflow.shared.protocol import ConfigAck, StatusMessage
from tests.support.api import ApiHarness, running_api

CONFIG = """\
detector: {backend: onnxruntime, model: /models/person.onnx, conf_threshold: 0.3}
cameras:
  - name: lobby
    source: {type: folder, path: /data/lobby, loop: true}
    fps: 2
heartbeat_s: 5
"""


def running(site: str = "s1", agent: str = "a1") -> EdgeConfig:
    doc = yaml.safe_load(CONFIG) | {"site": site, "agent_id": agent, "metrics_port": None}
    doc["spool"] = {"path": "/var/spool/x.sqlite3"}
    return EdgeConfig.model_validate(doc)


@pytest.fixture
def service(db_url: str) -> ConfigService:
    engine = create_engine_for(db_url)
    migrate(engine)
    yield ConfigService(engine)
    engine.dispose()


def test_the_cloud_hashes_a_config_as_every_agent_applying_it_does() -> None:
    checked = validate_edge_config(CONFIG)

    # two agents with different local sections apply the same text
    for site, agent in [("s1", "a1"), ("s2", "b7")]:
        applied = parse_pushed_config(CONFIG.encode(), running=running(site, agent))
        assert config_hash(applied) == checked.config_hash
    assert checked.payload_hash == payload_hash(CONFIG)
    assert (
        checked.config_hash != validate_edge_config(CONFIG.replace("fps: 2", "fps: 3")).config_hash
    )


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (CONFIG + "mqtt: {host: evil}\n", 7, "stays in each agent's local file"),
        (CONFIG.replace("fps: 2", "fps: -1"), 5, "greater than 0"),
        (CONFIG.replace("fps: 2", "fsp: 2"), 5, "unknown key"),
        ("cameras: [\n", 2, "invalid YAML"),
        ("- just\n- a list\n", 1, "expected a mapping"),
    ],
)
def test_invalid_configs_are_refused_with_the_line(text: str, line: int, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_edge_config(text)

    issue = caught.value.issues[0]
    assert expected in issue.message
    assert issue.location is not None and issue.location.line == line


def test_every_problem_is_reported_at_once_each_at_its_key() -> None:
    text = CONFIG + "mqtt:\n  host: evil\nheartbeat_s: -5\nspool:\n  path: /x\n"
    text = text.replace("heartbeat_s: 5\n", "").replace("fps: 2", "fsp: 2")

    with pytest.raises(ConfigError) as caught:
        validate_edge_config(text)

    found = [(i.location.line if i.location else None, i.field) for i in caught.value.issues]
    assert found == [
        (5, "cameras.0.fsp"),  # a schema problem, reported with the local sections
        (6, "mqtt"),  # the line of `mqtt:`, not of `host: evil` below it
        (8, "heartbeat_s"),
        (9, "spool"),
    ]


def test_an_oversized_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most 262144 bytes, got"):
        validate_edge_config(CONFIG + "#" * 300_000)


def test_assign_then_ack_then_resend_only_when_the_edge_reports_another_hash(
    service: ConfigService,
) -> None:
    version = service.create_version(CONFIG, created_by="ops", comment="first")
    service.assign(version.id, [("s1", "a1"), ("s1", "a1"), ("s2", "b7")], assigned_by="ops")
    now = utcnow()

    # never sent: both due at once
    due = service.due(now=now, resend_after_s=30)
    assert [(p.site, p.agent_id) for p in due] == [("s1", "a1"), ("s2", "b7")]
    for push in due:
        service.mark_sent(push, at=now)
    assert service.due(now=now, resend_after_s=30) == []

    # a1 applies it: acked, in sync, never due again
    results = ResultStore(service.engine)
    status = StatusMessage(
        state="online",
        agent_version="1",
        timestamp=utcnow(),
        applied_config_hash=version.config_hash,
    )
    results.upsert_edge_status(site="s1", agent_id="a1", status=status)
    assert service.record_ack(
        site="s1", agent_id="a1", ack=ConfigAck(hash=version.config_hash, status="applied")
    )
    # b7 reports another hash: due again once the resend interval passed, not before
    stale = StatusMessage(
        state="online", agent_version="1", timestamp=utcnow(), applied_config_hash="sha256:old"
    )
    results.upsert_edge_status(site="s2", agent_id="b7", status=stale)
    later = now + timedelta(seconds=31)
    assert service.due(now=now + timedelta(seconds=5), resend_after_s=30) == []
    assert [(p.site, p.agent_id) for p in service.due(now=later, resend_after_s=30)] == [
        ("s2", "b7")
    ]
    # ... unless it is offline
    offline = stale.model_copy(update={"state": "offline"})
    results.upsert_edge_status(site="s2", agent_id="b7", status=offline)
    assert service.due(now=later, resend_after_s=30) == []

    rows = service.assignments()
    assert rows[("s1", "a1")].ack_status == "applied"
    assert rows[("s1", "a1")].sent_count == 1
    assert rows[("s2", "b7")].ack_status == "pending"


def test_a_rejected_config_is_recorded_by_its_payload_hash_and_not_resent(
    service: ConfigService,
) -> None:
    version = service.create_version(CONFIG, created_by="ops")
    service.assign(version.id, [("s1", "a1")], assigned_by="ops")
    now = utcnow()
    for push in service.due(now=now, resend_after_s=1):
        service.mark_sent(push, at=now)
    # an ack for something else is ignored
    other = ConfigAck(hash="sha256:" + "0" * 64, status="rejected", error="no")
    assert not service.record_ack(site="s1", agent_id="a1", ack=other)
    # the agent could not load the model: it answers with the payload's hash
    rejected = ConfigAck(hash=payload_hash(CONFIG), status="rejected", error="model not found")
    assert service.record_ack(site="s1", agent_id="a1", ack=rejected)
    status = StatusMessage(
        state="online", agent_version="1", timestamp=utcnow(), applied_config_hash="sha256:old"
    )
    ResultStore(service.engine).upsert_edge_status(site="s1", agent_id="a1", status=status)

    assert service.due(now=now + timedelta(hours=1), resend_after_s=1) == []
    row = service.assignments()[("s1", "a1")]
    assert (row.ack_status, row.error) == ("rejected", "model not found")

    # a new assignment starts again
    service.assign(version.id, [("s1", "a1")], assigned_by="ops")
    assert len(service.due(now=now, resend_after_s=1)) == 1


def test_assigning_an_unknown_version_fails(service: ConfigService) -> None:
    with pytest.raises(LookupError, match="no config version 99"):
        service.assign(99, [("s1", "a1")], assigned_by="ops")


# --- API -------------------------------------------------------------------------------


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> ApiHarness:
    with running_api(db_url, tmp_path) as harness:
        yield harness


def test_api_validates_creates_lists_and_assigns_configs(api: ApiHarness) -> None:
    bad = api.post("/v1/configs/validate", json={"text": CONFIG + "spool: {}\n"}, who="operator")
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert bad.json()["issues"][0] | {"message": ""} == {
        "message": "",
        "field": "spool",
        "line": 7,
        "column": 8,
    }
    good = api.post("/v1/configs/validate", json={"text": CONFIG}, who="operator").json()
    assert good == {
        "valid": True,
        "config_hash": validate_edge_config(CONFIG).config_hash,
        "issues": [],
    }

    created = api.post("/v1/configs", json={"text": CONFIG, "comment": "v1"}, who="operator")
    assert created.status_code == 201
    version = created.json()
    assert version["created_by"] == "operator-key" and version["text"] == CONFIG
    refused = api.post("/v1/configs", json={"text": "cameras: []\n"}, who="operator")
    assert refused.status_code == 400
    assert "cameras" in refused.json()["error"]["message"]
    assert api.get("/v1/configs", who="viewer").json()[0]["id"] == version["id"]
    assert api.get(f"/v1/configs/{version['id']}", who="viewer").json() == version
    assert api.get("/v1/configs/999", who="viewer").status_code == 404

    edges = [{"site": "s1", "agent_id": "a1"}]
    assigned = api.post(f"/v1/configs/{version['id']}/assign", json={"edges": edges})
    assert assigned.status_code == 200
    assert assigned.json()[0]["ack_status"] == "pending"
    assert api.post("/v1/configs/999/assign", json={"edges": edges}).status_code == 404

    # an edge that never reported but has a config shows as unknown, not in sync
    listed = api.get("/v1/edges", who="viewer").json()
    assert [(e["site"], e["agent_id"], e["state"], e["online"], e["in_sync"]) for e in listed] == [
        ("s1", "a1", "unknown", False, False)
    ]
    assert api.get("/v1/edges/s1/a1", who="viewer").json() == listed[0]
    assert api.get("/v1/edges/s1/nobody", who="viewer").status_code == 404


def test_config_routes_need_an_operator(api: ApiHarness) -> None:
    assert api.post("/v1/configs", json={"text": CONFIG}, who="viewer").status_code == 403
    assert api.post("/v1/configs/validate", json={"text": CONFIG}, who="viewer").status_code == 403
    assert api.client.get("/v1/edges").status_code == 401
