"""Edge config versions shared by many edges; what the reconciler last sent to each edge.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

A config version no longer belongs to one agent (its hash leaves out the agent's local-only
sections, so one version fits many edges): ``site`` and ``agent_id`` become optional and a
``comment`` is kept. An assignment records the hash of the exact payload published (an edge
that rejects a config acknowledges that hash), when it was last sent and how often.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Relax the version's agent columns; add the send bookkeeping of assignments."""
    with op.batch_alter_table("edge_config_versions") as batch:
        batch.alter_column("site", existing_type=sa.String(length=64), nullable=True)
        batch.alter_column("agent_id", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("comment", sa.Text(), nullable=True))
    with op.batch_alter_table("edge_config_assignments") as batch:
        batch.add_column(sa.Column("payload_hash", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("last_sent_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("sent_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("assigned_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    """Drop the send bookkeeping; versions without an agent cannot go back and are deleted."""
    with op.batch_alter_table("edge_config_assignments") as batch:
        batch.drop_column("assigned_by")
        batch.drop_column("sent_count")
        batch.drop_column("last_sent_at")
        batch.drop_column("payload_hash")
    op.execute(
        "DELETE FROM edge_config_assignments WHERE config_version_id IN "
        "(SELECT id FROM edge_config_versions WHERE site IS NULL OR agent_id IS NULL)"
    )
    op.execute("DELETE FROM edge_config_versions WHERE site IS NULL OR agent_id IS NULL")
    with op.batch_alter_table("edge_config_versions") as batch:
        batch.drop_column("comment")
        batch.alter_column("agent_id", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("site", existing_type=sa.String(length=64), nullable=False)
