"""Places in an index: GPS EXIF at known cities gives places, "in PLACE" in queries, --place,
--near/--within, and the migration that fills places in for rows indexed before (library, CLI and
API side by side; checked against brute force over the stored vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.filters import Filters
from searchlib.indexer import index_folder
from tests.conftest import TINY, make_exif

#: file stem -> (GPS position, (city, country) as GeoNames names it; None: no place).
PHOTOS = {
    "tokyo1": ((35.6895, 139.6917), ("Tokyo", "Japan")),
    "tokyo2": ((35.6900, 139.7000), ("Tokyo", "Japan")),
    "lisbon": ((38.7223, -9.1393), ("Lisbon", "Portugal")),
    "porto": ((41.1496, -8.6110), ("Porto", "Portugal")),
    "sao_paulo": ((-23.5505, -46.6333), ("São Paulo", "Brazil")),
    "pacific": ((-30.0, -140.0), None),  # open sea: a position, no place
    "nogps": (None, None),
}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("places")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for stem, (gps, _) in PHOTOS.items():
        for copy in range(2):  # two photos per place, so filters have something to rank
            img = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
            img.save(photos / f"{stem}_{copy}.jpg", exif=make_exif(taken=f"2024:0{copy + 1}:01 10:00:00", gps=gps))
    index_folder(root / "index", photos, model=TINY, device="cpu", workers=0)
    return root


def _ids_where(index, pred) -> list[int]:
    return sorted(im["id"] for im in index.images() if pred(Path(im["path"]).stem.rsplit("_", 1)[0]))


def _brute(index, text: str, ids: list[int]) -> list[int]:
    _, all_ids, vecs = index.catalog.snapshot_vectors()
    keep = np.isin(all_ids, ids)
    sims = vecs[keep] @ index.query_vector(text)
    return all_ids[keep][np.argsort(-sims, kind="stable")].tolist()


def test_gps_exif_at_known_cities_gives_places(library):
    with open_index(library / "index") as index:
        images = list(index.images())
    assert len(images) == 2 * len(PHOTOS)
    for im in images:
        gps, expected = PHOTOS[Path(im["path"]).stem.rsplit("_", 1)[0]]
        if expected is None:
            assert im["place"] is None
        else:
            assert (im["place"]["city"], im["place"]["country"]) == expected and im["place"]["region"]
            assert len(im["place"]["country_code"]) == 2
        assert "place_city" not in im


@pytest.mark.parametrize("query,text,where", [
    ("a red circle in Tokyo", "a red circle", lambda s: s.startswith("tokyo")),
    ("beach in Portugal", "beach", lambda s: s in ("lisbon", "porto")),
    ("a street near sao paulo", "a street", lambda s: s == "sao_paulo"),
    ("a tram in Lisbon, Portugal", "a tram", lambda s: s == "lisbon"),
])
def test_a_trailing_place_in_the_index_becomes_a_filter(library, query, text, where):
    with open_index(library / "index") as index:
        hits = index.search(query, k=20)
        expected = _brute(index, text, _ids_where(index, where))
        assert index.query_warnings(query) == []
    assert [h.id for h in hits] == expected and hits


def test_phrases_that_are_not_places_in_the_index_stay_plain_text(library):
    with open_index(library / "index") as index:
        everything = _ids_where(index, lambda s: True)
        for query in ("a man in black", "a photo of Tokyo", "a dog in snow"):
            assert [h.id for h in index.search(query, k=20)] == _brute(index, query, everything)
            assert index.query_warnings(query) == []
        # Spain is a place (the gazetteer knows it) with no photo here: warned, and the whole text is searched.
        assert [h.id for h in index.search("beach in Spain", k=20)] == _brute(index, "beach in Spain", everything)
        (warning,) = index.query_warnings("beach in Spain")
        assert "Spain" in warning and "\n" not in warning
        assert index.place_query("a red circle in Tokyo").places == ("Tokyo",)
        assert [h.id for h in index.search("a red circle in Tokyo", k=20, places=False)] == _brute(
            index, "a red circle in Tokyo", everything)


def test_place_and_near_filters(library):
    with open_index(library / "index") as index:
        by_code = index.catalog.filtered_ids(Filters(places=("pt",))).tolist()
        assert by_code == _ids_where(index, lambda s: s in ("lisbon", "porto"))
        assert index.catalog.filtered_ids(Filters(places=("Portugal", "Porto"))).tolist() == _ids_where(
            index, lambda s: s == "porto")
        assert index.catalog.filtered_ids(Filters(places=("Atlantis",))).tolist() == []
        # Lisbon-Porto is 274 km: 10 km around Lisbon holds Lisbon only, 300 km both.
        near = index.catalog.filtered_ids(Filters(near=(38.72, -9.14), within_km=10)).tolist()
        assert near == _ids_where(index, lambda s: s == "lisbon")
        wide = index.catalog.filtered_ids(Filters(near=(38.72, -9.14), within_km=300)).tolist()
        assert wide == _ids_where(index, lambda s: s in ("lisbon", "porto"))
        assert index.catalog.filtered_ids(Filters(near=(-30.0, -140.0), within_km=1)).tolist() == _ids_where(
            index, lambda s: s == "pacific")


def test_cli_place_near_and_in_place(library):
    runner = CliRunner()
    base = ["--index", str(library / "index"), "search"]
    out = runner.invoke(main, base + ["sunset", "--place", "japan", "--json"])
    assert out.exit_code == 0, out.output
    assert {h["place"]["city"] for h in json.loads(out.stdout)} == {"Tokyo"}
    near = runner.invoke(main, base + ["sunset", "--near", "41.15,-8.61", "--within", "5", "--json"])
    assert {Path(h["path"]).stem.rsplit("_", 1)[0] for h in json.loads(near.stdout)} == {"porto"}
    inq = runner.invoke(main, base + ["a cat in Portugal", "--json"])
    assert {h["place"]["country"] for h in json.loads(inq.stdout)} == {"Portugal"}
    missing = runner.invoke(main, base + ["a cat in Spain", "--json"])
    assert missing.exit_code == 0 and missing.stderr.count("\n") == 1 and "Spain" in missing.stderr
    assert len(json.loads(missing.stdout)) == 10
    bad = runner.invoke(main, base + ["x", "--near", "north"])
    assert bad.exit_code == 1 and "LAT,LON" in bad.stderr and "Traceback" not in bad.output
    off = runner.invoke(main, base + ["x", "--near", "91,0"])
    assert off.exit_code == 1 and "-90..90" in off.stderr
    assert runner.invoke(main, base + ["x", "--within", "5"]).exit_code == 2


def test_api_place_and_near(library):
    from fastapi.testclient import TestClient

    from searchlib.web import create_app

    with TestClient(create_app(library / "index", device="cpu"), base_url="http://localhost") as client:
        body = client.get("/api/v1/search", params={"q": "a boat in Tokyo", "k": 20}).json()
        assert {h["place"]["city"] for h in body["hits"]} == {"Tokyo"} and body["query"]["places"] == ["Tokyo"]
        near = client.get("/api/v1/search", params={"q": "x", "near": "38.72,-9.14", "within": 10}).json()
        assert {h["place"]["city"] for h in near["hits"]} == {"Lisbon"}
        place = client.get("/api/v1/search", params={"q": "x", "place": ["Brazil"]}).json()
        assert {h["place"]["country"] for h in place["hits"]} == {"Brazil"}
        warned = client.get("/api/v1/search", params={"q": "a boat in Spain"}).json()
        assert any("Spain" in w for w in warned["warnings"]) and len(warned["hits"]) == 14
        bad = client.get("/api/v1/search", params={"q": "x", "near": "1,2,3"})
        assert bad.status_code == 400 and "LAT,LON" in bad.json()["error"]
        alone = client.get("/api/v1/search", params={"q": "x", "within": 5})  # named as the API names them
        assert alone.status_code == 400 and alone.json()["error"].startswith("within needs near LAT,LON")
        assert "--" not in alone.json()["error"]


def test_migration_fills_places_for_rows_indexed_before(library, tmp_path):
    import shutil

    from alembic import command
    from sqlalchemy import create_engine, text

    from searchlib.migrate import alembic_config

    shutil.copytree(library / "index", tmp_path / "index")
    engine = create_engine(f"sqlite:///{tmp_path / 'index' / 'catalog.sqlite'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(images)"))]
    engine.dispose()
    assert "place_city" not in columns
    with open_index(tmp_path / "index") as index:  # opening migrates and backfills
        got = {Path(im["path"]).stem: im["place"] for im in index.images()}
        with open_index(library / "index") as fresh:
            assert got == {Path(im["path"]).stem: im["place"] for im in fresh.images()}
        assert [h.id for h in index.search("a cat in Japan", k=5)] == _brute(
            index, "a cat", _ids_where(index, lambda s: s.startswith("tokyo")))


def test_place_and_near_filters_on_every_backend(catalog_url):
    """Places are stored by the writer path's catalog and filtered alike on SQLite and PostgreSQL
    (accents, case, codes; a radius across the antimeridian)."""
    from searchlib.catalog import Catalog, ChangeSet
    from searchlib.records import ImageMetadata, ImageRecord
    from searchlib.writer import with_places

    points = {"sp": (-23.5505, -46.6333), "fiji_e": (-16.80, 179.99), "fiji_w": (-16.80, -179.99),
              "none": (None, None)}
    batch = ChangeSet(added=[(ImageRecord(f"/p/{name}.jpg", 1, 1, f"h-{name}", ImageMetadata(
        width=4, height=3, format="JPEG", gps_lat=lat, gps_lon=lon)), np.array([1, 0], np.float32))
        for name, (lat, lon) in points.items()])
    cat = Catalog(catalog_url, create=True)
    ids = dict(zip(points, cat.apply(with_places(batch)).added_ids))
    rows = cat.images(list(ids.values()))
    assert rows[ids["sp"]].record.metadata.place_city == "São Paulo"
    assert cat.filtered_ids(Filters(places=("SAO PAULO",))).tolist() == [ids["sp"]]
    assert cat.filtered_ids(Filters(places=("br",))).tolist() == [ids["sp"]]
    assert cat.filtered_ids(Filters(places=("fiji",))).tolist() == sorted([ids["fiji_e"], ids["fiji_w"]])
    # 0.02 degrees of longitude apart across the antimeridian: about 2 km.
    assert cat.filtered_ids(Filters(near=(-16.80, 179.995), within_km=5)).tolist() == sorted(
        [ids["fiji_e"], ids["fiji_w"]])
    assert cat.filtered_ids(Filters(near=(-16.80, 179.991), within_km=0.5)).tolist() == [ids["fiji_e"]]
