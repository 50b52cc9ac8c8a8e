"""Per-agent broker credentials: the ACL generator, and the shipped security on a real broker.

The broker tests start a private mosquitto (Debian's 2.0.11) with the security settings of
``configs/mosquitto.conf`` (no anonymous clients, a password file, an ACL file), filled with
users and an ACL that :mod:`lensflow.services.mosquitto_auth` wrote for two agents of one
site. Measured on 2.0.11 and asserted below: a refused MQTT 5 publish gets PUBACK 0x87 and
reaches no subscriber; a refused MQTT 3.1.1 publish gets a plain PUBACK and is dropped; a
subscription to any filter is granted, and each message is checked against the reader's ACL
when it is delivered (a last will too).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lensflow.services.mosquitto import MosquittoBroker, MosquittoConfig
from lensflow.services.mosquitto_auth import (
    CLOUD_USER,
    AclError,
    AgentGrant,
    render_acl,
    write_password_file,
)
from lensflow.shared.config import load_edge_config
from lensflow.shared.protocol.topics import (
    ALL_CROPS,
    ALL_STATUS,
    config_ack_topic,
    config_topic,
    crops_topic,
    receipts_topic,
    status_topic,
)
from tests.support.mqtt_probe import NOT_AUTHORIZED, Probe

SITE = "plant-a"
AGENT_A = AgentGrant(user="edge-1@plant-a", site=SITE, agent_id="edge-1", cameras=("gate", "dock"))
AGENT_B = AgentGrant(user="edge-2@plant-a", site=SITE, agent_id="edge-2", cameras=("yard",))
PASSWORDS = {AGENT_A.user: "pw-a", AGENT_B.user: "pw-b", CLOUD_USER: "pw-cloud"}
SECURITY_KEYS = ("allow_anonymous", "password_file", "acl_file", "per_listener_settings")


def shipped_security(repo_root: Path) -> dict[str, str]:
    """The security settings of the shipped production config."""
    lines = (repo_root / "configs" / "mosquitto.conf").read_text().splitlines()
    pairs = (line.split(None, 1) for line in lines if line and line[0] != "#")
    return {key: value for key, value in pairs if key in SECURITY_KEYS}


def secured_broker(
    folder: Path, repo_root: Path, grants: list[AgentGrant], passwords: dict[str, str]
) -> MosquittoBroker:
    """A private broker with the shipped security settings, these users and their ACL."""
    shipped = shipped_security(repo_root)
    folder.mkdir(parents=True, exist_ok=True)
    write_password_file(folder / "passwd", passwords)
    (folder / "acl").write_text(render_acl(grants))
    config = replace(
        MosquittoBroker(folder).config,  # a free port, run_as_root as the tests need
        allow_anonymous=shipped["allow_anonymous"] == "true",
        password_file=folder / "passwd" if "password_file" in shipped else None,
        acl_file=folder / "acl" if "acl_file" in shipped else None,
    )
    return MosquittoBroker(folder, config=config)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One secured broker for the module's read-only checks (agents A and B, the cloud)."""
    repo_root = Path(__file__).resolve().parents[2]
    folder = tmp_path_factory.mktemp("secured")
    with secured_broker(folder, repo_root, [AGENT_A, AGENT_B], PASSWORDS) as running:
        yield running


def probe(
    broker: MosquittoBroker, user: str, *, v5: bool = True, will: tuple[str, bytes] | None = None
) -> Probe:
    """A client logged in as one of the module broker's users."""
    return Probe(broker, user=user, password=PASSWORDS[user], v5=v5, will=will)


@pytest.fixture
def cloud(broker: MosquittoBroker) -> Iterator[Probe]:
    """The cloud user, subscribed to every crop and every status."""
    client = probe(broker, CLOUD_USER).connected()
    client.subscribe(ALL_CROPS)
    client.subscribe(ALL_STATUS)
    yield client
    client.close()


# --- the ACL the generator writes ------------------------------------------------------------


def test_the_shipped_acl_is_the_one_generated_for_the_shipped_edge_config(repo_root: Path) -> None:
    edge = load_edge_config(repo_root / "configs" / "edge.yaml")

    generated = render_acl([AgentGrant.from_config(edge)])

    assert (repo_root / "configs" / "mosquitto.acl").read_text() == generated


def test_the_shipped_config_refuses_anonymous_clients_and_reads_users_and_an_acl(
    repo_root: Path, tmp_path: Path
) -> None:
    shipped = shipped_security(repo_root)
    started = MosquittoConfig(
        port=1883,
        data_dir=tmp_path,
        allow_anonymous=False,
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
    ).render()

    assert shipped["allow_anonymous"] == "false"
    assert {"password_file", "acl_file"} <= shipped.keys()
    assert shipped.get("per_listener_settings", "false") == "false"  # one ACL for every listener
    assert "allow_anonymous false" in started.splitlines()


def test_an_agent_writes_only_its_cameras_crops_and_its_own_agent_topics() -> None:
    assert AGENT_A.writes() == [
        "lensflow/v1/plant-a/gate/crops",
        "lensflow/v1/plant-a/dock/crops",
        "lensflow/v1/plant-a/edge-1/status",
        "lensflow/v1/plant-a/edge-1/config/ack",
    ]
    assert AGENT_A.reads() == [
        "lensflow/v1/plant-a/edge-1/config",
        "lensflow/v1/plant-a/gate/receipts",
        "lensflow/v1/plant-a/dock/receipts",
    ]


def test_an_agent_without_a_user_name_logs_in_as_agent_at_site(repo_root: Path) -> None:
    edge = load_edge_config(repo_root / "configs" / "edge.yaml")
    named = edge.model_copy(update={"mqtt": edge.mqtt.model_copy(update={"username": "gate-7"})})

    assert AgentGrant.from_config(edge).user == "edge-1@demo-site"
    assert AgentGrant.from_config(named).user == "gate-7"


@pytest.mark.parametrize(
    ("other", "why"),
    [
        # another agent of the same site with a camera of the same name
        (AgentGrant("edge-9@plant-a", SITE, "edge-9", ("dock",)), "plant-a/dock/crops"),
        # another agent of the same site with the same agent id (under another user name)
        (AgentGrant("edge-1-bis", SITE, "edge-1", ("lane-1",)), "plant-a/edge-1/status"),
        # another agent with the first one's broker user
        (AgentGrant("edge-1@plant-a", SITE, "edge-9", ("lane-1",)), "its own user"),
        # an agent that would log in as the cloud
        (AgentGrant(CLOUD_USER, SITE, "edge-9", ("lane-1",)), "the cloud's user"),
    ],
)
def test_agents_that_an_acl_cannot_tell_apart_are_refused(other: AgentGrant, why: str) -> None:
    with pytest.raises(AclError, match=why):
        render_acl([AGENT_A, other])


@pytest.mark.parametrize(
    "other",
    [
        # the same agent id and camera names at another site
        AgentGrant("edge-1@plant-b", "plant-b", "edge-1", ("gate", "dock")),
        # an agent id that is another agent's camera name: status and crops stay apart
        AgentGrant("gate@plant-a", SITE, "gate", ("lane-1",)),
    ],
)
def test_agents_whose_topics_do_not_overlap_are_fine(other: AgentGrant) -> None:
    assert f"user {other.user}" in render_acl([AGENT_A, other])


@pytest.mark.parametrize("user", ["edge 1", "edge:1", "edge/1", "%u", ""])
def test_a_user_name_the_broker_files_cannot_hold_is_refused(user: str) -> None:
    with pytest.raises(AclError, match="broker user name must be"):
        render_acl([replace(AGENT_A, user=user)])


def test_a_private_broker_that_refuses_anonymous_clients_needs_a_password_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="needs a password_file"):
        MosquittoConfig(port=1883, data_dir=tmp_path, allow_anonymous=False)


# --- the rules on a real broker ----------------------------------------------------------------


@pytest.mark.integration
def test_an_agent_publishes_to_its_own_cameras_and_the_cloud_reads_them(
    broker: MosquittoBroker, cloud: Probe
) -> None:
    agent = probe(broker, AGENT_A.user).connected()
    topic = crops_topic(site=SITE, camera="dock")

    code = agent.publish(topic, b"crop-of-dock")

    assert not code.is_failure, code
    assert cloud.wait_received(topic, b"crop-of-dock")
    agent.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    "topic",
    [
        crops_topic(site=SITE, camera="yard"),  # a camera of agent B
        status_topic(site=SITE, camera="edge-2"),  # agent B's status
        config_ack_topic(site=SITE, camera="edge-2"),  # agent B's config ack
        crops_topic(site="plant-b", camera="gate"),  # its own camera name at another site
        config_topic(site=SITE, camera="edge-1"),  # its own config: only the cloud writes it
    ],
)
def test_a_publish_outside_the_agents_topics_is_refused_and_reaches_no_one(
    broker: MosquittoBroker, cloud: Probe, topic: str
) -> None:
    agent = probe(broker, AGENT_A.user).connected()
    cloud.subscribe(topic)
    marker = crops_topic(site=SITE, camera="gate")

    code = agent.publish(topic, b"forged")
    agent.publish(marker, b"after-forged")  # same connection: delivered after the forged one

    assert code.value == NOT_AUTHORIZED
    assert cloud.wait_received(marker, b"after-forged")
    assert cloud.received(topic) == []
    agent.close()


@pytest.mark.integration
def test_on_mqtt_311_a_refused_publish_is_acknowledged_but_dropped(
    broker: MosquittoBroker, cloud: Probe
) -> None:
    # MQTT 3.1.1 has no reason code in PUBACK: the edge cannot tell, and the crop is gone
    agent = probe(broker, AGENT_A.user, v5=False).connected()
    forged, marker = crops_topic(site=SITE, camera="yard"), crops_topic(site=SITE, camera="gate")

    agent.publish(forged, b"forged-311")
    agent.publish(marker, b"after-forged-311")

    assert cloud.wait_received(marker, b"after-forged-311")
    assert b"forged-311" not in cloud.received(forged)
    agent.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("user", "password", "v5"),
    [
        (None, None, True),  # anonymous, MQTT 5
        (None, None, False),  # anonymous, MQTT 3.1.1 (CONNACK 5; paho reports it as 0x87)
        (AGENT_A.user, "pw-b", True),  # a real user, another's password
        ("edge-7@plant-a", "pw-a", True),  # a user not in the password file
    ],
)
def test_a_client_without_valid_credentials_is_refused(
    broker: MosquittoBroker, user: str | None, password: str | None, v5: bool
) -> None:
    client = Probe(broker, user=user, password=password, v5=v5)

    code = client.wait_connack()

    assert code.value == NOT_AUTHORIZED
    client.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("own", "other"),
    [
        # configs, from the control plane: B's own, and A's
        (config_topic(site=SITE, camera="edge-2"), config_topic(site=SITE, camera="edge-1")),
        # receipts, from the workers: for B's camera, and for one of A's
        (receipts_topic(site=SITE, camera="yard"), receipts_topic(site=SITE, camera="gate")),
    ],
)
def test_an_agent_reads_what_the_cloud_sends_it_and_not_what_it_sends_another(
    broker: MosquittoBroker, own: str, other: str
) -> None:
    agent_b = probe(broker, AGENT_B.user).connected()
    agent_b.subscribe(other)  # granted: mosquitto checks reads when it delivers
    agent_b.subscribe(own)
    cloud = probe(broker, CLOUD_USER).connected()

    assert not cloud.publish(other, b"for-a").is_failure
    assert not cloud.publish(own, b"for-b").is_failure  # delivered after the one for A

    assert agent_b.wait_received(own, b"for-b")
    assert agent_b.received(other) == []
    for client in (cloud, agent_b):
        client.close()


@pytest.mark.integration
def test_a_last_will_on_another_agents_status_is_never_delivered(
    broker: MosquittoBroker, cloud: Probe
) -> None:
    status_of_b = status_topic(site=SITE, camera="edge-2")
    forger = probe(broker, AGENT_A.user, will=(status_of_b, b"forged-offline")).connected()
    honest = probe(broker, AGENT_B.user, will=(status_of_b, b"offline")).connected()

    forger.drop()
    time.sleep(0.2)  # the forger's will would be handled first
    honest.drop()

    assert cloud.wait_received(status_of_b, b"offline")
    assert cloud.received(status_of_b) == [b"offline"]


def connect_once_allowed(broker: MosquittoBroker, user: str, password: str) -> Probe:
    """Connect as ``user``, retrying while the broker has not reloaded its files yet."""
    deadline = time.monotonic() + 5
    while True:
        client = Probe(broker, user=user, password=password)
        if not client.wait_connack().is_failure or time.monotonic() > deadline:
            return client.connected()
        client.close()
        time.sleep(0.05)


@pytest.mark.integration
def test_an_agent_and_a_camera_added_to_the_files_work_after_a_reload(
    tmp_path: Path, repo_root: Path
) -> None:
    # given a broker that knows agent A (cameras gate and dock), and A connected
    agent_c = AgentGrant(user="edge-3@plant-a", site=SITE, agent_id="edge-3", cameras=("lane-1",))
    grown_a = replace(AGENT_A, cameras=(*AGENT_A.cameras, "lane-2"))
    new_camera, camera_of_c = (crops_topic(site=SITE, camera=c) for c in ("lane-2", "lane-1"))
    passwords = {AGENT_A.user: "pw-a", CLOUD_USER: "pw-cloud"}
    with secured_broker(tmp_path, repo_root, [AGENT_A], passwords) as broker:
        a = Probe(broker, user=AGENT_A.user, password="pw-a").connected()
        assert a.publish(new_camera, b"before").value == NOT_AUTHORIZED
        unknown = Probe(broker, user=agent_c.user, password="pw-c")
        assert unknown.wait_connack().value == NOT_AUTHORIZED
        unknown.close()
        # when agent C and A's camera lane-2 are added to the files, and the broker reloads
        write_password_file(tmp_path / "passwd", {**passwords, agent_c.user: "pw-c"})
        (tmp_path / "acl").write_text(render_acl([grown_a, agent_c]))
        broker.reload()
        # then C connects and publishes, and A, still on the same connection, may use lane-2
        c = connect_once_allowed(broker, agent_c.user, "pw-c")
        assert not c.publish(camera_of_c, b"c").is_failure
        assert not a.publish(new_camera, b"after").is_failure
        assert a.publish(camera_of_c, b"a").value == NOT_AUTHORIZED
        for client in (a, c):
            client.close()
