"""Image ids are never reused: SQLite's images table takes AUTOINCREMENT.

Without it SQLite hands the highest deleted id to the next new photo, so a link such as
``/?like=8`` or a cached ``/api/v1/images/8/file`` would point at another photo. PostgreSQL ids
come from a sequence, which never goes back: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    # The rebuild copies every row with its id; migrate.upgrade turns foreign keys off around it,
    # so that dropping the old table does not cascade into embeddings and tags.
    with op.batch_alter_table("images", recreate="always",
                              table_kwargs={"sqlite_autoincrement": True}):
        pass
    # Ids handed out before this revision and since deleted live on in the change log: the
    # sequence starts above every id ever seen.
    floor = conn.execute(sa.text(
        "SELECT max(m) FROM (SELECT max(id) AS m FROM images "
        "UNION ALL SELECT max(image_id) FROM changes)")).scalar() or 0
    conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'images'"))
    conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('images', :s)"), {"s": floor})


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    with op.batch_alter_table("images", recreate="always",
                              table_kwargs={"sqlite_autoincrement": False}):
        pass
