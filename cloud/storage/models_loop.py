"""Tables of the loop back to the fleet: running workers, trained heads, replay jobs.

Beside :mod:`lensflow.cloud.storage.models` (same declarative base and naming convention);
migration 0008 creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lensflow.cloud.storage.models import Base, BigIntPK, JsonDoc, UtcDateTime, utcnow

REPLAY_STATES = ("queued", "running", "done", "failed")
"""A replay job's states, in order."""


class WorkerRow(Base):
    """A cloud worker as it last reported itself: what it runs, since when, what went wrong."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_pipeline", "pipeline"),)

    id: Mapped[str] = mapped_column(String(256), primary_key=True)  # intake client id / tag
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    intake: Mapped[str] = mapped_column(String(256))  # "mqtt://host:port" or "amqp://.../queue"
    pipeline: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))  # the version it runs
    version_id: Mapped[int | None] = mapped_column(BigIntPK)  # pipeline_versions.id, if stored
    since: Mapped[datetime] = mapped_column(UtcDateTime())  # running this version since
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | stopped


class HeadRow(Base):
    """A trained head, stored by the sha256 of its file (a ``lensflow-head/1`` document)."""

    __tablename__ = "heads"
    __table_args__ = (Index("ix_heads_node_created_at", "node", "created_at"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(128))  # the node it labels
    embedding_node: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    classes: Mapped[list[str]] = mapped_column(JsonDoc)
    card: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # data, held-out figures, gate
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("pipeline_versions.id", ondelete="SET NULL")
    )


class ReplayJob(Base):
    """A candidate pipeline version run over stored crops, compared with their results."""

    __tablename__ = "replay_jobs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
        Index("ix_replay_jobs_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    pipeline_version_id: Mapped[int] = mapped_column(
        ForeignKey("pipeline_versions.id", ondelete="CASCADE")
    )
    state: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # limit and results filters
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    runner: Mapped[str] = mapped_column(String(256), default="")  # host:pid of the process
