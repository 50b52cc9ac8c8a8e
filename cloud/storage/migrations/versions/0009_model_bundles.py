"""Model bundles: the registry of detectors edges download by sha256.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09

- ``model_bundles``: each uploaded bundle's sha256, name, size, model card, and who uploaded
  it when; the bundle files live in the crop store's folder (``models/<sha256>.tar``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "model_bundles",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("card", JSON_DOC, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_model_bundles")),
    )
    op.create_index("ix_model_bundles_created_at", "model_bundles", ["created_at"])


def downgrade() -> None:
    """Drop the table (the bundle files stay in the folder)."""
    op.drop_index("ix_model_bundles_created_at", table_name="model_bundles")
    op.drop_table("model_bundles")
