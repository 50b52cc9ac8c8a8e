"""Canary rollouts of edge config versions, and the edges' heartbeat history.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10

- ``rollouts``: a config version on a canary edge first, then promoted to its site or the
  fleet, or rolled back; who did what when.
- ``rollout_edges``: each edge a rollout touched: its state of the version (pending,
  downloading, applied, rejected), the version, config hash and model it had before.
- ``edge_heartbeats``: online statuses as received (config hash, model sha256, running
  totals), kept for ``control.heartbeat_history_s``: a rollout's health before and after.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "rollouts",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("config_version_id", BIGINT_PK, nullable=False),
        sa.Column("config_hash", sa.String(length=128), nullable=False),
        sa.Column("payload_hash", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("promoted_at", TIMESTAMP, nullable=True),
        sa.Column("promoted_by", sa.String(length=128), nullable=True),
        sa.Column("rolled_back_at", TIMESTAMP, nullable=True),
        sa.Column("rolled_back_by", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "state IN ('canary', 'promoted', 'rolled_back')", name=op.f("ck_rollouts_state")
        ),
        sa.CheckConstraint("scope IN ('site', 'fleet')", name=op.f("ck_rollouts_scope")),
        sa.ForeignKeyConstraint(
            ["config_version_id"],
            ["edge_config_versions.id"],
            name=op.f("fk_rollouts_config_version_id_edge_config_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index("ix_rollouts_created_at", "rollouts", ["created_at"])
    op.create_table(
        "rollout_edges",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("rollout_id", BIGINT_PK, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("previous_version_id", BIGINT_PK, nullable=True),
        sa.Column("previous_config_hash", sa.String(length=128), nullable=True),
        sa.Column("previous_model_sha256", sa.String(length=64), nullable=True),
        sa.Column("assigned_at", TIMESTAMP, nullable=False),
        sa.Column("state_at", TIMESTAMP, nullable=False),
        sa.Column("applied_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'downloading', 'applied', 'rejected')",
            name=op.f("ck_rollout_edges_state"),
        ),
        sa.CheckConstraint("role IN ('canary', 'promoted')", name=op.f("ck_rollout_edges_role")),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_edges_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["previous_version_id"],
            ["edge_config_versions.id"],
            name=op.f("fk_rollout_edges_previous_version_id_edge_config_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_edges")),
        sa.UniqueConstraint(
            "rollout_id", "site", "agent_id", name=op.f("uq_rollout_edges_rollout_id_site_agent_id")
        ),
    )
    op.create_index("ix_rollout_edges_edge", "rollout_edges", ["site", "agent_id"])
    op.create_table(
        "edge_heartbeats",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("config_hash", sa.String(length=128), nullable=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("counters", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_heartbeats")),
    )
    op.create_index("ix_edge_heartbeats_edge_at", "edge_heartbeats", ["site", "agent_id", "at"])


def downgrade() -> None:
    """Drop the three tables (rollout history and heartbeats are lost)."""
    op.drop_index("ix_edge_heartbeats_edge_at", table_name="edge_heartbeats")
    op.drop_table("edge_heartbeats")
    op.drop_index("ix_rollout_edges_edge", table_name="rollout_edges")
    op.drop_table("rollout_edges")
    op.drop_index("ix_rollouts_created_at", table_name="rollouts")
    op.drop_table("rollouts")
