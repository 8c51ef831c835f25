"""Places: city, region, country and country code of each image's GPS position, filled in for
the rows indexed before (reverse geocoding offline; see searchlib.places.gazetteer).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = ("place_city", "place_region", "place_country", "place_country_code")


def _backfill_places(conn) -> None:
    """Rows with a GPS position get their place, as rows written from now on do. The gazetteer
    loads (a second or so) only when some row has a position."""
    rows = conn.execute(sa.text("SELECT id, gps_lat, gps_lon FROM images "
                                "WHERE gps_lat IS NOT NULL AND gps_lon IS NOT NULL")).fetchall()
    if not rows:
        return
    from searchlib.places.gazetteer import locate

    places = locate([(float(lat), float(lon)) for _, lat, lon in rows])
    updates = [{"i": image_id, "c": p.city, "r": p.region, "n": p.country, "k": p.country_code}
               for (image_id, _, _), p in zip(rows, places) if p is not None]
    if updates:
        conn.execute(sa.text("UPDATE images SET place_city = :c, place_region = :r, place_country = :n, "
                             "place_country_code = :k WHERE id = :i"), updates)


def upgrade() -> None:
    for name in _COLUMNS:
        op.add_column("images", sa.Column(name, sa.String, nullable=True))
    # The index's distinct places are read from this index alone (a query that names a place).
    op.create_index("ix_images_place", "images", ["place_country", "place_region", "place_city",
                                                  "place_country_code"])
    _backfill_places(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_images_place", "images")
    with op.batch_alter_table("images") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
