"""Index for the filtered results query: camera and class, newest first, by keyset pages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Measured by ``lensflow bench cloud`` on 1 M rows (PostgreSQL): without it the planner walks
``ix_crops_captured_at_id`` and filters row by row (41,882 rows read for a fifth page).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_crops_camera_class_name_captured_at_id"


def upgrade() -> None:
    """Create the index."""
    op.create_index(NAME, "crops", ["camera", "class_name", "captured_at", "id"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index(NAME, table_name="crops")
