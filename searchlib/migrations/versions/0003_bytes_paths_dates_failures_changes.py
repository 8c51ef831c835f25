"""Paths as bytes, capture dates as a column, remembered failures, a log of changes; 64-bit on PostgreSQL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _backfill_dates(conn) -> None:
    """captured_at = EXIF time, else the file's mtime as local time (what the code writes now)."""
    rows = conn.execute(sa.text("SELECT id, taken_at, mtime_ns FROM images")).fetchall()
    updates = []
    for image_id, taken_at, mtime_ns in rows:
        if isinstance(taken_at, str):
            taken_at = datetime.fromisoformat(taken_at)
        when = taken_at or datetime.fromtimestamp(mtime_ns / 1e9)
        updates.append({"i": image_id, "c": when, "s": "exif" if taken_at else "file"})
    if updates:
        conn.execute(sa.text("UPDATE images SET captured_at = :c, date_source = :s WHERE id = :i")
                     .bindparams(sa.bindparam("c", type_=sa.DateTime)), updates)


def upgrade() -> None:
    conn = op.get_bind()
    postgres = conn.dialect.name == "postgresql"
    op.add_column("images", sa.Column("captured_at", sa.DateTime, nullable=True))
    op.add_column("images", sa.Column("date_source", sa.String, nullable=True))
    _backfill_dates(conn)
    if postgres:
        op.execute("ALTER TABLE images ALTER COLUMN path TYPE bytea USING convert_to(path, 'UTF8')")
        for table, column in [("images", "id"), ("images", "size"), ("images", "mtime_ns"),
                              ("embeddings", "image_id"), ("tags", "image_id")]:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE bigint")
        op.execute("ALTER TABLE images ALTER COLUMN captured_at SET NOT NULL")
        op.execute("ALTER TABLE images ALTER COLUMN date_source SET NOT NULL")
    else:
        # SQLite columns take any type: store text paths as their UTF-8 bytes, as new rows are.
        op.execute("UPDATE images SET path = CAST(path AS BLOB) WHERE typeof(path) = 'text'")
    op.create_index("ix_images_captured_at", "images", ["captured_at"])
    op.create_table(
        "failures",
        sa.Column("path", sa.LargeBinary, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("error", sa.String, nullable=False),
        sa.Column("failed_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "changes",
        sa.Column("generation", sa.BigInteger, primary_key=True),
        sa.Column("image_id", sa.BigInteger, primary_key=True),
    )
    # Caches stamped before this revision cannot replay changes: they rebuild once.
    op.execute("INSERT INTO settings (key, value) SELECT 'changes_floor', value FROM settings "
               "WHERE key = 'generation'")


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_table("failures")
    op.drop_index("ix_images_captured_at", "images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("date_source")
        batch.drop_column("captured_at")
