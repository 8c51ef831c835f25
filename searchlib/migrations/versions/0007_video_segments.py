"""Items: a row of ``images`` is a whole image or one segment of a video.

New columns ``media`` (image | video), ``part`` (0..n-1 within a file), ``start``, ``end`` and
``duration`` (seconds; videos only). A video has one row per segment under the same path, so the
uniqueness moves from ``path`` to ``(path, part)``.

SQLite cannot drop a constraint in place: the table is rebuilt, keeping every id (and
AUTOINCREMENT's high-water mark, so deleted ids stay unused). The rebuild drops the triggers
that keep the full-text table of migration 0005 in step; they are made again exactly as 0005 made
them (the FTS5 table is external-content keyed on the ids, which the rebuild keeps).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: How SQLite's reflection names the unnamed UNIQUE (path) of migration 0001, so it can be dropped.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _columns() -> list[sa.Column]:
    return [sa.Column("media", sa.String, nullable=False, server_default="image"),
            sa.Column("part", sa.Integer, nullable=False, server_default="0"),
            sa.Column("start", sa.Float, nullable=True),
            sa.Column("end", sa.Float, nullable=True),
            sa.Column("duration", sa.Float, nullable=True)]


#: The triggers of migration 0005, as it made them (migrations are frozen history: spelled out).
FTS_TRIGGERS = [
    "CREATE TRIGGER images_text_insert AFTER INSERT ON images WHEN new.text_folded IS NOT NULL BEGIN "
    "INSERT INTO images_text (rowid, text_folded) VALUES (new.id, new.text_folded); END",
    "CREATE TRIGGER images_text_delete AFTER DELETE ON images WHEN old.text_folded IS NOT NULL BEGIN "
    "INSERT INTO images_text (images_text, rowid, text_folded) VALUES ('delete', old.id, old.text_folded); END",
    "CREATE TRIGGER images_text_update AFTER UPDATE OF text_folded ON images BEGIN "
    "INSERT INTO images_text (images_text, rowid, text_folded) SELECT 'delete', old.id, old.text_folded "
    "WHERE old.text_folded IS NOT NULL; "
    "INSERT INTO images_text (rowid, text_folded) SELECT new.id, new.text_folded WHERE new.text_folded IS NOT NULL; "
    "END",
]


def _sqlite_rebuild(conn, unique_on: list[str], add: bool) -> None:
    seq = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'images'")).scalar()
    had_fts = conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'images_text'")).first() is not None
    old, new = ("uq_images_path", "uq_images_path_part") if add else ("uq_images_path_part", "uq_images_path")
    with op.batch_alter_table("images", recreate="always", naming_convention=NAMING,
                              table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint(old, type_="unique")
        if add:
            for column in _columns():
                batch.add_column(column)
        else:
            for name in ("duration", "end", "start", "part", "media"):
                batch.drop_column(name)
        batch.create_unique_constraint(new, unique_on)
    if seq is not None:
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'images'"))
        conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('images', :s)"), {"s": seq})
    if had_fts:
        for name in ("images_text_insert", "images_text_delete", "images_text_update"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        for statement in FTS_TRIGGERS:
            conn.exec_driver_sql(statement)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _sqlite_rebuild(conn, ["path", "part"], add=True)
        return
    for column in _columns():
        op.add_column("images", column)
    op.drop_constraint("images_path_key", "images", type_="unique")
    op.create_unique_constraint("uq_images_path_part", "images", ["path", "part"])


def downgrade() -> None:
    conn = op.get_bind()
    # Only the first segment of each video can stay under a unique path.
    conn.execute(sa.text("DELETE FROM images WHERE part <> 0"))
    if conn.dialect.name == "sqlite":
        _sqlite_rebuild(conn, ["path"], add=False)
        return
    op.drop_constraint("uq_images_path_part", "images", type_="unique")
    op.create_unique_constraint("images_path_key", "images", ["path"])
    for name in ("duration", "end", "start", "part", "media"):
        op.drop_column("images", name)
