"""Tags: labels from zero-shot classification.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("label", sa.String, primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
    )
    op.create_index("ix_tags_label", "tags", ["label"])


def downgrade() -> None:
    op.drop_index("ix_tags_label", "tags")
    op.drop_table("tags")
