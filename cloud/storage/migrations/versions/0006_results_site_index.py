"""Index for the results query by site: one site's crops, newest first, by keyset pages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

``GET /v1/results?site=...`` (a camera name may exist on several sites) pages one site's crops by
``(captured_at, id)``: with ``(site, captured_at, id)`` PostgreSQL seeks to the cursor within the
site instead of walking every site's crops in time order. It replaces ``ix_crops_site``, which is
its prefix.

On PostgreSQL with 500k crops over 50 sites, a first page of one site reads its 50 rows through
this index, where without it the planner walks ``ix_crops_captured_at_id`` and filters out 2,407
rows of the other sites (the rarer the site, and the deeper the page, the more).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_crops_site_captured_at_id"
REPLACED = "ix_crops_site"


def upgrade() -> None:
    """Create the index, drop the one it replaces."""
    op.create_index(NAME, "crops", ["site", "captured_at", "id"])
    op.drop_index(REPLACED, table_name="crops")


def downgrade() -> None:
    """Restore the site index, drop this one."""
    op.create_index(REPLACED, "crops", ["site"])
    op.drop_index(NAME, table_name="crops")
