"""Request and response bodies of the edge config and edge routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lensflow.shared.errors import ConfigError

SEGMENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A site or agent id: one MQTT topic level (see docs/protocol.md)."""
Segment = Annotated[str, Field(pattern=SEGMENT)]
MAX_ASSIGN = 1000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigText(_Model):
    """An edge config as YAML or JSON text, without the agents' local-only sections."""

    text: str = Field(min_length=1, max_length=256 * 1024, description="YAML or JSON text.")


class ConfigCreate(ConfigText):
    """A new edge config version."""

    comment: str | None = Field(None, max_length=1024, description="Why this version.")


class ConfigIssueOut(_Model):
    """One problem of a config text."""

    message: str
    field: str = Field(description="Dotted path of the offending value, or empty.")
    line: int | None = Field(None, description="1-based line in the text.")
    column: int | None = None


def issues_out(err: ConfigError) -> list[ConfigIssueOut]:
    """The issues of a refused config or pipeline text, as the API reports them."""
    return [
        ConfigIssueOut(
            message=issue.message,
            field=issue.field,
            line=issue.location.line if issue.location else None,
            column=issue.location.column if issue.location else None,
        )
        for issue in err.issues
    ]


class ConfigValidation(_Model):
    """Whether a config text would be accepted by the agents, and its hash if so."""

    valid: bool
    config_hash: str | None = Field(None, description="The agents' hash of it, when valid.")
    issues: list[ConfigIssueOut]


class ConfigVersionOut(_Model):
    """A stored edge config version."""

    id: int
    config_hash: str
    text: str
    comment: str | None
    created_at: datetime
    created_by: str | None


class EdgeRef(_Model):
    """An edge agent, by site and agent id."""

    site: Segment
    agent_id: Segment


class AssignRequest(_Model):
    """The edges a config version is assigned to."""

    edges: list[EdgeRef] = Field(min_length=1, max_length=MAX_ASSIGN)


class AssignmentOut(_Model):
    """An edge's desired config and what the edge answered about it."""

    site: str
    agent_id: str
    config_version_id: int
    desired_hash: str
    ack_status: Literal["pending", "applied", "rejected"]
    acked_hash: str | None
    error: str | None = Field(description="The edge's reason, when it rejected the config.")
    assigned_at: datetime
    assigned_by: str | None
    acked_at: datetime | None
    last_sent_at: datetime | None
    sent_count: int


class EdgeOut(_Model):
    """An edge agent: its last status, heartbeat counters and config state."""

    site: str
    agent_id: str
    online: bool = Field(description="Said online in its last status, and heard recently.")
    state: Literal["online", "offline", "unknown"] = Field(
        description="What its last status said; unknown if it never reported."
    )
    agent_version: str | None
    applied_config_hash: str | None
    counters: dict[str, int]
    status_at: datetime | None
    last_seen: datetime | None
    desired: AssignmentOut | None
    in_sync: bool | None = Field(
        description="Applied hash equals the desired one; null when nothing is assigned."
    )
