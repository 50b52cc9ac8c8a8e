"""The results database schema: SQLAlchemy 2 typed declarative models.

Portable across SQLite (the default) and PostgreSQL (production): JSON columns are JSON on
SQLite and JSONB on PostgreSQL; timestamps are ``DateTime(timezone=True)`` through
:class:`UtcDateTime`, which stores UTC and always hands back aware UTC datetimes, also on
SQLite (which keeps no zone). Every schema change goes through an Alembic migration in
``cloud/storage/migrations/versions``; a test checks that the migrations and these models agree.

Rows that point at a crop do so through ``crop_pk`` (the integer ``crops.id``); the protocol's
``crop_id`` string is the crop's unique idempotency key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from lensflow.cloud.storage.errors import StorageError

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names, so that migrations can name what they alter on every dialect."""

BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit keys; INTEGER on SQLite, where only ``INTEGER PRIMARY KEY`` auto-increments."""
JsonDoc = JSON().with_variant(JSONB(), "postgresql")
"""A JSON document: JSONB on PostgreSQL (indexable), JSON text elsewhere."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored in UTC and loaded back as aware UTC.

    Naive datetimes are refused on the way in (their zone is unknown). On SQLite, which has
    no timestamp type, the value is stored as naive UTC text and UTC is re-attached on load.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Express an aware datetime in UTC (naive UTC on SQLite); refuse naive ones."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise StorageError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every lensflow table, with the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Edge(Base):
    """An edge agent, as last reported on its status topic."""

    __tablename__ = "edges"
    __table_args__ = (
        UniqueConstraint("site", "agent_id"),
        CheckConstraint("state IN ('online', 'offline')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    agent_version: Mapped[str] = mapped_column(String(64))
    applied_config_hash: Mapped[str | None] = mapped_column(String(128))
    counters: Mapped[dict[str, int]] = mapped_column(JsonDoc, default=dict)
    last_status: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    status_at: Mapped[datetime] = mapped_column(UtcDateTime())  # the message's timestamp
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Camera(Base):
    """A camera of a site, with the capture times of its first and latest stored crops."""

    __tablename__ = "cameras"
    __table_args__ = (UniqueConstraint("site", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime())


class Crop(Base):
    """One crop received from an edge: its header, where its JPEG is, and its pipeline."""

    __tablename__ = "crops"
    __table_args__ = (
        Index("ix_crops_captured_at_id", "captured_at", "id"),  # keyset pagination
        # the review screen's query: one camera and class, newest first, page by page
        Index(
            "ix_crops_camera_class_name_captured_at_id", "camera", "class_name", "captured_at", "id"
        ),
        Index("ix_crops_camera", "camera"),
        # one site's crops, newest first (the same camera name may exist on several sites)
        Index("ix_crops_site_captured_at_id", "site", "captured_at", "id"),
        Index("ix_crops_class_name", "class_name"),
        Index("ix_crops_score", "score"),
        Index("ix_crops_jpeg_sha256", "jpeg_sha256"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    crop_id: Mapped[str] = mapped_column(String(64), unique=True)  # the idempotency key
    site: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    class_name: Mapped[str] = mapped_column(String(128))
    class_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    box_x1: Mapped[float] = mapped_column(Float)
    box_y1: Mapped[float] = mapped_column(Float)
    box_x2: Mapped[float] = mapped_column(Float)
    box_y2: Mapped[float] = mapped_column(Float)
    frame_width: Mapped[int] = mapped_column(Integer)
    frame_height: Mapped[int] = mapped_column(Integer)
    track_id: Mapped[int | None] = mapped_column(BigInteger)
    crop_box: Mapped[list[int] | None] = mapped_column(JsonDoc)  # [x1, y1, x2, y2] or null
    model_sha256: Mapped[str] = mapped_column(String(64))
    config_hash: Mapped[str] = mapped_column(String(128))
    agent_version: Mapped[str] = mapped_column(String(64))
    jpeg_sha256: Mapped[str] = mapped_column(String(64))  # the crop store key
    jpeg_size: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    pipeline_name: Mapped[str] = mapped_column(String(128))
    pipeline_version: Mapped[str | None] = mapped_column(String(64))

    results: Mapped[list[ClassifierResult]] = relationship(
        back_populates="crop", passive_deletes=True, order_by="ClassifierResult.id"
    )
    human_labels: Mapped[list[HumanLabel]] = relationship(
        back_populates="crop", passive_deletes=True, order_by="HumanLabel.id"
    )
    reviews: Mapped[list[CropReview]] = relationship(
        back_populates="crop", passive_deletes=True, order_by="CropReview.id"
    )


class ClassifierResult(Base):
    """What one DAG node did for one crop (a ``NodeResult``), with its label pulled out."""

    __tablename__ = "classifier_results"
    __table_args__ = (
        UniqueConstraint("crop_pk", "node"),
        CheckConstraint("status IN ('ok', 'skipped', 'error')", name="status"),
        Index("ix_classifier_results_node_label", "node", "label"),
        Index("ix_classifier_results_node_score", "node", "score"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    crop_pk: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(128))
    plugin: Mapped[str] = mapped_column(String(256))
    plugin_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(256))  # output "label", else "color"
    score: Mapped[float | None] = mapped_column(Float)  # output "score", else "confidence"
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    batch_size: Mapped[int] = mapped_column(Integer, default=0)

    crop: Mapped[Crop] = relationship(back_populates="results")


class CropEmbedding(Base):
    """An embedding a DAG node computed for a crop (its output ``vector``), for image search.

    Vectors live here, not in the result's JSON payload: float32 little-endian bytes, 5 KiB
    for 1280 dimensions. ``id`` only grows, so a search index catches up by reading the rows
    after the last id it indexed; the database stays the source of truth to rebuild it from.
    """

    __tablename__ = "crop_embeddings"
    __table_args__ = (
        UniqueConstraint("crop_pk", "node"),
        Index("ix_crop_embeddings_node_id", "node", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    crop_pk: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(256))  # the plugin's model identifier
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, L2-normalised


class HumanLabel(Base):
    """A label an operator gave a crop, for a node or for the detection itself."""

    __tablename__ = "human_labels"
    __table_args__ = (
        Index("ix_human_labels_crop_pk_node", "crop_pk", "node"),
        Index("ix_human_labels_node_label", "node", "label"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    crop_pk: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(128))  # a DAG node name, or "detection"
    label: Mapped[str] = mapped_column(String(256))
    actor: Mapped[str] = mapped_column(String(128))  # the API key's name
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    undone: Mapped[bool] = mapped_column(Boolean, default=False)

    crop: Mapped[Crop] = relationship(back_populates="human_labels")


class LabelEvent(Base):
    """One change of a crop's label: the audit trail; a bulk change shares one ``batch_id``."""

    __tablename__ = "label_events"
    __table_args__ = (
        Index("ix_label_events_crop_pk", "crop_pk"),
        Index("ix_label_events_batch_id", "batch_id"),
        Index("ix_label_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    crop_pk: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(128))
    old_label: Mapped[str | None] = mapped_column(String(256))
    new_label: Mapped[str | None] = mapped_column(String(256))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    old_status: Mapped[str | None] = mapped_column(String(16))  # the review status before
    new_status: Mapped[str | None] = mapped_column(String(16))


REVIEW_STATUSES = ("accepted", "relabelled", "rejected", "unsure")
"""A review's status: the model is right, a human label is set, a wrong detection, skipped."""


class CropReview(Base):
    """A human's review of one node of one crop: a status, not a class (one row or none)."""

    __tablename__ = "crop_reviews"
    __table_args__ = (
        UniqueConstraint("crop_pk", "node"),
        CheckConstraint(
            "status IN ('accepted', 'relabelled', 'rejected', 'unsure')", name="status"
        ),
        Index("ix_crop_reviews_node_status", "node", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    crop_pk: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(128))  # a DAG node name, or "detection"
    status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    crop: Mapped[Crop] = relationship(back_populates="reviews")


class LabelSchemaVersion(Base):
    """A version of a node's label schema: its labels in model order (ids, keys, colours)."""

    __tablename__ = "label_schema_versions"
    __table_args__ = (
        UniqueConstraint("node", "version"),
        CheckConstraint("source IN ('pipeline', 'model', 'observed', 'operator')", name="source"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    node: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)  # [{id, name, key, color}]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class PipelineVersion(Base):
    """A stored version of the pipeline DAG's YAML; one per name is active."""

    __tablename__ = "pipeline_versions"
    __table_args__ = (
        UniqueConstraint("name", "sha256"),
        Index("ix_pipeline_versions_name_active", "name", "active"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    yaml_text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class EdgeConfigVersion(Base):
    """A version of the edge config, assignable to any number of agents.

    ``config_hash`` is the agents' canonical hash (it leaves out their local-only sections),
    so one version fits many edges; ``site``/``agent_id`` only say whom it was written for.
    """

    __tablename__ = "edge_config_versions"
    __table_args__ = (Index("ix_edge_config_versions_agent", "site", "agent_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    site: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    config_text: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))


class EdgeConfigAssignment(Base):
    """The config an agent should run, and what the agent last answered about it."""

    __tablename__ = "edge_config_assignments"
    __table_args__ = (
        UniqueConstraint("site", "agent_id"),
        CheckConstraint("ack_status IN ('pending', 'applied', 'rejected')", name="ack_status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(64))
    config_version_id: Mapped[int] = mapped_column(ForeignKey("edge_config_versions.id"))
    desired_hash: Mapped[str] = mapped_column(String(128))
    acked_hash: Mapped[str | None] = mapped_column(String(128))
    ack_status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    assigned_by: Mapped[str | None] = mapped_column(String(128))
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    payload_hash: Mapped[str | None] = mapped_column(String(128))  # of the bytes last sent
    last_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    sent_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    config_version: Mapped[EdgeConfigVersion] = relationship()


class DeadLetter(Base):
    """A message that could not be processed, kept with the reason for inspection."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        CheckConstraint("source IN ('mqtt', 'amqp', 'http')", name="source"),
        Index("ix_dead_letters_received_at", "received_at"),
        Index("ix_dead_letters_crop_id", "crop_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(8))
    topic: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    payload_size: Mapped[int] = mapped_column(Integer)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # whole, or its head if truncated
    payload_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    crop_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # if the header told
