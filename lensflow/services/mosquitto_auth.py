"""Who may connect to a mosquitto broker, and what each client may publish and read.

One broker user per edge agent, with explicit ``topic`` lines for its own topics only: write on
the ``crops`` topic of each of its cameras and on its agent-level ``status`` and
``config/ack``; read on its ``config`` and on its cameras' ``receipts``. The cloud (workers
and the API's control plane) has one user that reads crops, statuses and acks and writes
configs and receipts. :func:`render_acl` writes the ``acl_file`` from the agents' edge configs;
:func:`write_password_file` writes a ``password_file`` with ``mosquitto_passwd``.

Why explicit lines and not ``%u`` patterns: a crops topic is
``lensflow/v1/{site}/{camera}/crops`` and names the camera, not the agent, and one agent (one
MQTT connection, one user name) serves several cameras. A mosquitto pattern substitutes one
value per level (``%u`` or ``%c``), so no pattern can say "the cameras of this user". The
agent-level topics could use ``%u``, but only with the site in a second value or with user
names equal to agent ids, which repeat across sites. Lines generated from the edge configs
say exactly what each agent owns, and generating them checks what no ACL can express: two
agents of one site that use the same topic segment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lensflow.services.process import ServiceError
from lensflow.shared.config.edge import EdgeConfig
from lensflow.shared.protocol.topics import (
    TopicKind,
    config_ack_topic,
    config_topic,
    crops_topic,
    receipts_topic,
    status_topic,
    subscription_filter,
    validate_segment,
)

CLOUD_USER = "lensflow-cloud"
"""The broker user of the cloud: workers and the API's control plane."""

DROPPED_COUNTER = "$SYS/broker/publish/messages/dropped"
"""Mosquitto's dropped-messages counter, which the workers export as a metric."""

USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
"""A broker user name this module writes: no ``:`` (the password file's separator), no
spaces, no ``/ + # %`` (they would read as topic levels, wildcards or substitutions)."""

PASSWD_FALLBACK = Path("/usr/bin/mosquitto_passwd")
"""Where Debian's mosquitto package installs ``mosquitto_passwd``."""

_HEADER = """\
# lensflow broker ACL (mosquitto acl_file), written by `lensflow broker acl EDGE_CONFIG...`.
# One user per edge agent, allowed only its own cameras' crops and its own agent topics; the
# cloud user reads crops, statuses and acks and writes configs and receipts. No line comes
# before the first `user`: an anonymous client may do nothing. See docs/protocol.md
# (Broker security). After a change: kill -HUP the broker (it re-reads this file).
"""


class AclError(ServiceError):
    """Broker users or topics that an ACL cannot keep apart, or a password file not written."""


def agent_user(*, site: str, agent_id: str) -> str:
    """The default broker user of an agent: ``{agent_id}@{site}``.

    ``@`` is not allowed in site or agent ids, so the name is unique across sites (agent ids
    such as ``edge-1`` repeat from one site to the next).
    """
    return f"{agent_id}@{site}"


def _checked_user(user: str) -> str:
    if USER_PATTERN.fullmatch(user) is None:
        raise AclError(
            f"broker user name must be 1-128 characters of A-Z a-z 0-9 _ . @ - starting with "
            f"a letter or digit, but got {user!r}"
        )
    return user


@dataclass(frozen=True)
class AgentGrant:
    """What one edge agent may do at the broker.

    Attributes:
        user: The broker user the agent logs in as.
        site: The agent's site.
        agent_id: The agent's id, in the camera position of its agent-level topics.
        cameras: The names of its cameras.

    Raises:
        AclError: If the user name is not one the password file and the ACL can hold.
        ProtocolError: If the site, the agent id or a camera is not a topic segment.

    """

    user: str
    site: str
    agent_id: str
    cameras: tuple[str, ...]

    def __post_init__(self) -> None:
        _checked_user(self.user)
        validate_segment(self.site, name="site")
        validate_segment(self.agent_id, name="agent id")
        for camera in self.cameras:
            validate_segment(camera, name="camera")

    @classmethod
    def from_config(cls, config: EdgeConfig, *, user: str | None = None) -> AgentGrant:
        """The grant of an agent from its edge config.

        Args:
            config: The agent's edge config.
            user: The broker user; else the config's ``mqtt.username``, else
                :func:`agent_user`.

        """
        name = (
            user or config.mqtt.username or agent_user(site=config.site, agent_id=config.agent_id)
        )
        return cls(
            user=name,
            site=config.site,
            agent_id=config.agent_id,
            cameras=tuple(camera.name for camera in config.cameras),
        )

    def writes(self) -> list[str]:
        """Topics the agent publishes to: its cameras' crops, its status (and will), its acks."""
        site, agent = self.site, self.agent_id
        return [
            *(crops_topic(site=site, camera=camera) for camera in self.cameras),
            status_topic(site=site, camera=agent),
            config_ack_topic(site=site, camera=agent),
        ]

    def reads(self) -> list[str]:
        """Topics the agent subscribes to: its config, and its cameras' receipts."""
        site = self.site
        return [
            config_topic(site=site, camera=self.agent_id),
            *(receipts_topic(site=site, camera=camera) for camera in self.cameras),
        ]

    def render(self) -> str:
        """This agent's block of the ACL file."""
        lines = [
            f"# agent {self.agent_id} of site {self.site}, cameras {', '.join(self.cameras)}",
            f"user {self.user}",
            *(f"topic write {topic}" for topic in self.writes()),
            *(f"topic read {topic}" for topic in self.reads()),
        ]
        return "\n".join(lines) + "\n"


def cloud_block(user: str = CLOUD_USER) -> str:
    """The cloud user's block of the ACL file (every site, every camera).

    Args:
        user: The cloud's broker user.

    """
    lines = [
        "# the cloud: workers read crops (and the dropped counter); the control plane reads",
        "# statuses and acks and writes configs; workers write receipts",
        f"user {_checked_user(user)}",
        f"topic read {subscription_filter(TopicKind.CROPS)}",
        f"topic read {subscription_filter(TopicKind.STATUS)}",
        f"topic read {subscription_filter(TopicKind.CONFIG_ACK)}",
        f"topic write {subscription_filter(TopicKind.CONFIG)}",
        f"topic write {subscription_filter(TopicKind.RECEIPTS)}",
        f"topic read {DROPPED_COUNTER}",
    ]
    return "\n".join(lines) + "\n"


def check_grants(grants: Iterable[AgentGrant], *, cloud_user: str = CLOUD_USER) -> None:
    """Refuse agents that an ACL cannot tell apart.

    Args:
        grants: Every agent the broker serves.
        cloud_user: The cloud's user, which no agent may share.

    Raises:
        AclError: If two agents share a user, an agent uses the cloud's user, or two agents
            would be allowed the same topic (two agents of one site with the same agent id,
            or each with a camera of the same name): each could publish as the other.

    """
    users: dict[str, AgentGrant] = {}
    owners: dict[str, AgentGrant] = {}
    for grant in grants:
        if grant.user == cloud_user:
            raise AclError(f"agent {grant.agent_id} of site {grant.site} uses the cloud's user")
        if (other := users.setdefault(grant.user, grant)) is not grant:
            raise AclError(
                f"agents {other.agent_id} of site {other.site} and {grant.agent_id} of site "
                f"{grant.site} both log in as {grant.user!r}: each agent needs its own user"
            )
        for topic in [*grant.writes(), *grant.reads()]:
            if (owner := owners.setdefault(topic, grant)) is not grant:
                raise AclError(
                    f"agents {owner.agent_id} and {grant.agent_id} of site {grant.site} would "
                    f"both be allowed {topic}: agent ids, and camera names, must be unique "
                    "within a site; rename one"
                )


def render_acl(
    grants: Iterable[AgentGrant], *, cloud_user: str = CLOUD_USER, agents_only: bool = False
) -> str:
    """The whole ACL file: a header, the cloud's block, then one block per agent.

    Args:
        grants: Every agent the broker serves.
        cloud_user: The cloud's user.
        agents_only: Only the agents' blocks (to append to an existing file).

    Raises:
        AclError: See :func:`check_grants`.

    """
    agents = list(grants)
    check_grants(agents, cloud_user=cloud_user)
    blocks = [grant.render() for grant in agents]
    if agents_only:
        return "\n".join(blocks)
    return _HEADER + "\n" + "\n".join([cloud_block(cloud_user), *blocks])


def find_mosquitto_passwd() -> Path:
    """Locate ``mosquitto_passwd`` on PATH or at ``/usr/bin``.

    Raises:
        AclError: If it is not installed (Debian: the ``mosquitto`` package).

    """
    found = shutil.which("mosquitto_passwd")
    if found is not None:
        return Path(found)
    if PASSWD_FALLBACK.is_file() and os.access(PASSWD_FALLBACK, os.X_OK):
        return PASSWD_FALLBACK
    raise AclError(
        f"expected mosquitto_passwd on PATH or at {PASSWD_FALLBACK}; install it with "
        "`apt-get install mosquitto`"
    )


def write_password_file(path: Path, credentials: Mapping[str, str]) -> None:
    """Write a mosquitto ``password_file`` holding these users, replacing the file.

    The plain ``user:password`` lines are written with mode 0600 and hashed in place by
    ``mosquitto_passwd -U``, so no password appears on a command line.

    Args:
        path: The file to write.
        credentials: Password by user name.

    Raises:
        AclError: If a user name or password cannot be written (``:`` or a line break in a
            user, a line break in a password), or mosquitto_passwd is missing or fails.

    """
    for user, password in credentials.items():
        _checked_user(user)
        if not password or "\n" in password or "\r" in password:
            raise AclError(f"password of {user!r} must be non-empty, on one line")
    tool = find_mosquitto_passwd()
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.writelines(f"{user}:{password}\n" for user, password in credentials.items())
    result = subprocess.run(  # noqa: S603 - a fixed tool and a path we wrote
        [str(tool), "-U", str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        path.unlink(missing_ok=True)  # never leave plain passwords behind
        raise AclError(f"mosquitto_passwd -U {path} failed: {result.stderr.strip()}")
