"""Running workers, trained heads and replay jobs: the loop back to the fleet.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

- ``workers``: each cloud worker's last report (what pipeline version it runs, since when, its
  last error, last seen); ``GET /v1/workers`` reads it.
- ``heads``: heads trained from reviewed labels, stored by the sha256 of their file.
- ``replay_jobs``: candidate pipeline versions replayed over stored crops, with progress and
  the report.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("intake", sa.String(length=256), nullable=False),
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("version_id", BIGINT_PK, nullable=True),
        sa.Column("since", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_error_at", TIMESTAMP, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_pipeline", "workers", ["pipeline"])
    op.create_table(
        "heads",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("embedding_node", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("classes", JSON_DOC, nullable=False),
        sa.Column("card", JSON_DOC, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("candidate_id", BIGINT_PK, nullable=True),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["pipeline_versions.id"],
            name=op.f("fk_heads_candidate_id_pipeline_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_heads")),
    )
    op.create_index("ix_heads_node_created_at", "heads", ["node", "created_at"])
    op.create_table(
        "replay_jobs",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("pipeline_version_id", BIGINT_PK, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", JSON_DOC, nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("report", JSON_DOC, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("runner", sa.String(length=256), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_replay_jobs_state")
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_version_id"],
            ["pipeline_versions.id"],
            name=op.f("fk_replay_jobs_pipeline_version_id_pipeline_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_jobs")),
    )
    op.create_index("ix_replay_jobs_state", "replay_jobs", ["state"])


def downgrade() -> None:
    """Drop the three tables (worker reports, heads and replay reports are lost)."""
    op.drop_index("ix_replay_jobs_state", table_name="replay_jobs")
    op.drop_table("replay_jobs")
    op.drop_index("ix_heads_node_created_at", table_name="heads")
    op.drop_table("heads")
    op.drop_index("ix_workers_pipeline", table_name="workers")
    op.drop_table("workers")
