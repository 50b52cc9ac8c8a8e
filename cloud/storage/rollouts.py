"""Tables of canary rollouts of edge config versions, and the edges' heartbeat history.

Beside :mod:`lensflow.cloud.storage.models` (same declarative base and naming convention);
migration 0010 creates them. A rollout assigns a config version to one canary edge, then
(promoted) to the rest of its site or of the fleet; each edge it touched keeps the version
it had before, for a rollback. Heartbeats are kept for a while so that a rollout's health on
the new version can be compared with the same edge's on the previous one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lensflow.cloud.storage.models import Base, BigIntPK, JsonDoc, UtcDateTime, utcnow

ROLLOUT_STATES = ("canary", "promoted", "rolled_back")
"""A rollout's states: on its canary only, on every edge of its scope, or undone."""
EDGE_STATES = ("pending", "downloading", "applied", "rejected")
"""An edge's state of a rollout's version, from its config acks."""


class Rollout(Base):
    """A config version rolled out to one canary edge first, then promoted or rolled back."""

    __tablename__ = "rollouts"
    __table_args__ = (
        CheckConstraint("state IN ('canary', 'promoted', 'rolled_back')", name="state"),
        CheckConstraint("scope IN ('site', 'fleet')", name="scope"),
        Index("ix_rollouts_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    config_version_id: Mapped[int] = mapped_column(ForeignKey("edge_config_versions.id"))
    config_hash: Mapped[str] = mapped_column(String(128))  # the agents' hash: applied acks
    payload_hash: Mapped[str] = mapped_column(String(128))  # of its text: rejected acks
    scope: Mapped[str] = mapped_column(String(8))  # promote to the canary's site, or the fleet
    site: Mapped[str] = mapped_column(String(64))  # the canary's
    agent_id: Mapped[str] = mapped_column(String(64))  # the canary's
    state: Mapped[str] = mapped_column(String(16), default="canary")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    promoted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    promoted_by: Mapped[str | None] = mapped_column(String(128))
    rolled_back_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rolled_back_by: Mapped[str | None] = mapped_column(String(128))


class RolloutEdge(Base):
    """One edge a rollout touched: its state of the version, and what it ran before."""

    __tablename__ = "rollout_edges"
    __table_args__ = (
        UniqueConstraint("rollout_id", "site", "agent_id"),
        CheckConstraint("state IN ('pending', 'downloading', 'applied', 'rejected')", name="state"),
        CheckConstraint("role IN ('canary', 'promoted')", name="role"),
        Index("ix_rollout_edges_edge", "site", "agent_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    site: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    previous_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("edge_config_versions.id")
    )  # its assigned version before; None: it ran its local file
    previous_config_hash: Mapped[str | None] = mapped_column(String(128))  # applied before
    previous_model_sha256: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    state_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class EdgeHeartbeat(Base):
    """An online status of an edge as received: its config, model and running totals."""

    __tablename__ = "edge_heartbeats"
    __table_args__ = (Index("ix_edge_heartbeats_edge_at", "site", "agent_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())  # the status's own timestamp
    config_hash: Mapped[str | None] = mapped_column(String(128))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    counters: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
