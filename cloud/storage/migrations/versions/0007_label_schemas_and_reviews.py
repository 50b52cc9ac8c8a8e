"""Label schemas per node, review statuses per crop and node, statuses in the audit trail.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

- ``label_schema_versions``: a node's labels in model order (id, name, hotkey, colour), one row
  per version; the API stores version 1 when a node's schema is first read.
- ``crop_reviews``: a crop's review status for a node (``accepted``, ``relabelled``,
  ``rejected``, ``unsure``): statuses, not classes.
- ``label_events.old_status`` / ``new_status``: the audit trail records status changes beside
  label changes, so an undo restores both.

Existing data: every current human label becomes a ``relabelled`` review (by its actor, at
its time), and every existing label event gets the statuses its labels imply (a label:
``relabelled``; none: no status), so batches made before this revision undo as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the two tables, add the status columns, and fill them from existing labels."""
    op.create_table(
        "label_schema_versions",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("labels", JSON_DOC, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.CheckConstraint(
            "source IN ('pipeline', 'model', 'observed', 'operator')",
            name=op.f("ck_label_schema_versions_source"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_schema_versions")),
        sa.UniqueConstraint("node", "version", name=op.f("uq_label_schema_versions_node_version")),
    )
    op.create_table(
        "crop_reviews",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("crop_pk", BIGINT_PK, nullable=False),
        sa.Column("node", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('accepted', 'relabelled', 'rejected', 'unsure')",
            name=op.f("ck_crop_reviews_status"),
        ),
        sa.ForeignKeyConstraint(
            ["crop_pk"],
            ["crops.id"],
            name=op.f("fk_crop_reviews_crop_pk_crops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crop_reviews")),
        sa.UniqueConstraint("crop_pk", "node", name=op.f("uq_crop_reviews_crop_pk_node")),
    )
    op.create_index("ix_crop_reviews_node_status", "crop_reviews", ["node", "status"])
    with op.batch_alter_table("label_events") as batch:
        batch.add_column(sa.Column("old_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("new_status", sa.String(length=16), nullable=True))
    # one review per current human label (the routes keep one human_labels row per crop
    # and node; the latest wins should there be several)
    op.execute(
        """
        INSERT INTO crop_reviews (crop_pk, node, status, actor, at)
        SELECT h.crop_pk, h.node, 'relabelled', h.actor, h.created_at
        FROM human_labels h
        WHERE h.undone = false
          AND h.id = (SELECT max(l.id) FROM human_labels l
                      WHERE l.crop_pk = h.crop_pk AND l.node = h.node)
        """
    )
    op.execute(
        """
        UPDATE label_events SET
          old_status = CASE WHEN old_label IS NULL THEN NULL ELSE 'relabelled' END,
          new_status = CASE WHEN new_label IS NULL THEN NULL ELSE 'relabelled' END
        """
    )


def downgrade() -> None:
    """Drop the status columns and the two tables (reviews and schema versions are lost)."""
    with op.batch_alter_table("label_events") as batch:
        batch.drop_column("new_status")
        batch.drop_column("old_status")
    op.drop_index("ix_crop_reviews_node_status", table_name="crop_reviews")
    op.drop_table("crop_reviews")
    op.drop_table("label_schema_versions")
