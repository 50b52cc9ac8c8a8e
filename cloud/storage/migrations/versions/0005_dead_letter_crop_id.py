"""Dead letters keep the crop id when the header got that far (and are found by it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``dead_letters.crop_id`` and its index."""
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("crop_id", sa.String(64), nullable=True))
    op.create_index("ix_dead_letters_crop_id", "dead_letters", ["crop_id"])


def downgrade() -> None:
    """Drop ``dead_letters.crop_id``."""
    op.drop_index("ix_dead_letters_crop_id", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("crop_id")
