"""Crop embeddings for image search: one float32 vector per crop and embedding node.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_INT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``crop_embeddings``."""
    op.create_table(
        "crop_embeddings",
        sa.Column("id", BIG_INT_PK, primary_key=True),
        sa.Column(
            "crop_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("crops.id", ondelete="CASCADE", name="fk_crop_embeddings_crop_pk_crops"),
            nullable=False,
        ),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crop_embeddings"),
        sa.UniqueConstraint("crop_pk", "node", name="uq_crop_embeddings_crop_pk_node"),
    )
    op.create_index("ix_crop_embeddings_node_id", "crop_embeddings", ["node", "id"])


def downgrade() -> None:
    """Drop ``crop_embeddings``."""
    op.drop_index("ix_crop_embeddings_node_id", table_name="crop_embeddings")
    op.drop_table("crop_embeddings")
