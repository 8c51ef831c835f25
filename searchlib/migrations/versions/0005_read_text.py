"""Words read in images: the text as read, a folded copy for matching, and a full-text index.

SQLite: an FTS5 table with the trigram tokenizer over ``text_folded`` (substrings match, so
"pharm" finds PHARMACY), kept in step with ``images`` by triggers. PostgreSQL: a trigram GIN index
(pg_trgm) on ``text_folded`` that serves the same LIKE lookups. Where the trigram tokenizer or the
extension is missing, matching still works, by scanning.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE images_text USING fts5(text_folded, content='images', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER images_text_insert AFTER INSERT ON images WHEN new.text_folded IS NOT NULL BEGIN "
    "INSERT INTO images_text (rowid, text_folded) VALUES (new.id, new.text_folded); END",
    "CREATE TRIGGER images_text_delete AFTER DELETE ON images WHEN old.text_folded IS NOT NULL BEGIN "
    "INSERT INTO images_text (images_text, rowid, text_folded) VALUES ('delete', old.id, old.text_folded); END",
    # One trigger for updates, so that the old entry is removed before the new one is added
    # (SQLite runs separate triggers on one event newest first).
    "CREATE TRIGGER images_text_update AFTER UPDATE OF text_folded ON images BEGIN "
    "INSERT INTO images_text (images_text, rowid, text_folded) SELECT 'delete', old.id, old.text_folded "
    "WHERE old.text_folded IS NOT NULL; "
    "INSERT INTO images_text (rowid, text_folded) SELECT new.id, new.text_folded WHERE new.text_folded IS NOT NULL; "
    "END",
]


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column("images", sa.Column("text", sa.String, nullable=True))
    op.add_column("images", sa.Column("text_folded", sa.String, nullable=True))
    if conn.dialect.name == "sqlite":
        try:
            with conn.begin_nested():
                for statement in SQLITE_FTS:
                    conn.exec_driver_sql(statement)
        except sa.exc.OperationalError as e:  # an SQLite without FTS5 or its trigram tokenizer
            log.warning("no full-text index for read text (%s); text matching will scan", e)
    else:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                conn.exec_driver_sql("CREATE INDEX ix_images_text_trgm ON images USING gin (text_folded gin_trgm_ops)")
        except sa.exc.SQLAlchemyError as e:  # no pg_trgm, or no right to create it
            log.warning("no trigram index for read text (%s); text matching will scan", e)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name in ("images_text_insert", "images_text_delete", "images_text_update"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        conn.exec_driver_sql("DROP TABLE IF EXISTS images_text")
    else:
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_images_text_trgm")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("text_folded")
        batch.drop_column("text")
