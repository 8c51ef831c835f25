"""Places: reverse geocoding of GPS positions, place phrases in queries, distances (pure parts and
the gazetteer; the index side is in test_places_search.py)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from searchlib.places import haversine_km, normalize_name, read_place_phrase
from searchlib.places.distance import bounding_box
from searchlib.places.gazetteer import KNOWN_NAMES_FILE, MAX_DISTANCE_KM, gazetteer, known_names, locate
from searchlib.places.names import PlaceNames

#: (lat, lon) of city centres, with what GeoNames calls them (independent of the code: looked up by hand).
CITIES = [
    ((35.6895, 139.6917), ("Tokyo", "Japan", "JP")),
    ((38.7223, -9.1393), ("Lisbon", "Portugal", "PT")),
    ((48.8566, 2.3522), ("Paris", "France", "FR")),
    ((-33.8688, 151.2093), ("Sydney", "Australia", "AU")),
    ((64.1466, -21.9426), ("Reykjavík", "Iceland", "IS")),
    ((-22.9068, -43.1729), ("Rio de Janeiro", "Brazil", "BR")),
]


@pytest.mark.parametrize("point,expected", CITIES)
def test_city_centres_are_placed(point, expected):
    (place,) = locate([point])
    assert (place.city, place.country, place.country_code) == expected and place.region


def test_a_city_quarter_is_named_after_its_city_and_far_points_get_no_place():
    # 700 m from Lisbon's centre lies "Intendente", a quarter GeoNames lists as its own place.
    lisbon, null_island, mid_pacific, nan, off_globe = locate(
        [(38.72, -9.14), (0.0, 0.0), (-30.0, -140.0), (math.nan, 1.0), (95.0, 10.0)])
    assert lisbon.city == "Lisbon"
    assert null_island is None and mid_pacific is None and nan is None and off_globe is None


def test_the_nearest_place_is_the_nearest_on_the_globe():
    # Just west of the antimeridian in Fiji: in raw degrees, places at -179.9 look 360 degrees away.
    (east,), (west,) = locate([(-16.80, 179.99)]), locate([(-16.80, -179.99)])
    assert east is not None and west is not None and east.country_code == west.country_code == "FJ"


def test_the_grid_finds_the_nearest_place_that_brute_force_finds():
    g = gazetteer()
    rng = np.random.default_rng(2)
    # Random positions, and positions a few km off real places (where the grid is dense).
    picks = rng.integers(0, len(g.cities), 150)
    points = list(zip(rng.uniform(-89, 89, 150), rng.uniform(-180, 180, 150)))
    points += list(zip(g.lat[picks] + rng.normal(0, 0.05, 150), np.clip(g.lon[picks] + rng.normal(0, 0.05, 150),
                                                                       -180, 180)))
    cities, codes = np.array(g.cities, dtype=object), np.array(g.codes, dtype=object)
    for (lat, lon), place in zip(points, g.locate(points)):
        every = haversine_km(lat, lon, g.lat, g.lon)
        if every.min() > MAX_DISTANCE_KM:
            assert place is None
            continue
        box = g._within_box(lat, lon, MAX_DISTANCE_KM)
        assert haversine_km(lat, lon, g.lat[box], g.lon[box]).min() == every.min()
        named = every[(cities == place.city) & (codes == place.country_code)]
        assert named.min() <= every.min() + 5.0  # the nearest, or a bigger place at most 5 km farther


def test_places_the_gazetteer_gives_are_within_the_limit():
    g = gazetteer()
    rng = np.random.default_rng(0)
    points = [(float(a), float(b)) for a, b in zip(rng.uniform(-60, 70, 200), rng.uniform(-180, 180, 200))]
    placed = g.locate(points)
    names = {p.city for p in placed if p}
    assert 0 < len(names) < 200 and sum(p is None for p in placed) > 50  # oceans are most of the globe
    assert MAX_DISTANCE_KM == 100.0


def test_shipped_warning_names_match_the_gazetteer(tmp_path):
    """The small names file beside the code is what write_known_names makes from the installed data."""
    names = gazetteer().warn_names()
    shipped = Path(__file__).resolve().parent.parent / "searchlib" / "places" / KNOWN_NAMES_FILE
    assert gzip.decompress(shipped.read_bytes()).decode().split() == " ".join(names).split()
    assert {"japan", "portugal", "tokyo", "new york", "bavaria"} <= known_names()
    assert not {"black", "red", "snow", "front", "night"} & known_names()


@pytest.mark.parametrize("raw,norm", [
    ("São Paulo", "sao paulo"), ("  SAO   PAULO ", "sao paulo"), ("St. Louis", "st louis"),
    ("The Hague", "hague"), ("Zürich", "zurich"), ("Reykjavík", "reykjavik"), ("the", "the"), ("", ""),
])
def test_normalize_name(raw, norm):
    assert normalize_name(raw) == norm


HELD = PlaceNames([("Tokyo", "Tokyo", "Japan", "JP"), ("Lisbon", "Lisbon", "Portugal", "PT"),
                   ("São Paulo", "São Paulo", "Brazil", "BR"), ("Snow", None, None, "US")])


@pytest.mark.parametrize("query,text,places", [
    ("a red circle in Tokyo", "a red circle", ("Tokyo",)),
    ("beach in Portugal", "beach", ("Portugal",)),
    ("beach IN portugal.", "beach", ("portugal",)),
    ("beach in Lisbon, ", "beach", ("Lisbon",)),
    ("a street at night in Sao Paulo", "a street at night", ("Sao Paulo",)),
    ("a cafe near the tower in Lisbon", "a cafe near the tower", ("Lisbon",)),
    ("tram in Lisbon, Portugal", "tram", ("Lisbon", "Portugal")),
    ("near Tokyo", "Tokyo", ("Tokyo",)),
    ("a man in black", "a man in black", ()),  # no place the index holds is called "black"
    ("a dog in snow", "a dog", ("snow",)),  # but a town called Snow is, here: the index decides
    ("a photo of Tokyo", "a photo of Tokyo", ()),
    ("in the mood in", "in the mood in", ()),
    ("standing in JP", "standing in JP", ()),  # codes are not read from free text ("smiling at me")
    ("sunset in Tokyo at the beach", "sunset in Tokyo at the beach", ()),
])
def test_read_place_phrase(query, text, places):
    got = read_place_phrase(query, lambda n: HELD.holds(n, codes=False))
    assert (got.text, got.places, got.missing) == (text, places, None)


def test_a_place_the_index_does_not_hold_warns_and_stays_text():
    got = read_place_phrase("beach in Spain", lambda n: HELD.holds(n, codes=False),
                            lambda n: normalize_name(n) in known_names())
    assert got.text == "beach in Spain" and got.places == () and got.missing == "Spain"
    assert got.warning and "Spain" in got.warning and "\n" not in got.warning
    plain = read_place_phrase("a man in black", lambda n: False, lambda n: normalize_name(n) in known_names())
    assert plain.missing is None and plain.warning is None


def test_place_names_match_every_part_and_codes_only_when_asked():
    assert HELD.matching("japan") == {"country": {"Japan"}}
    assert HELD.matching("TOKYO") == {"city": {"Tokyo"}, "region": {"Tokyo"}}
    assert HELD.matching("jp") == {"country_code": {"JP"}} and HELD.matching("jp", codes=False) == {}
    assert HELD.matching("sao paulo")["city"] == {"São Paulo"}


def test_haversine_against_known_distances():
    # Paris-London 343.5 km, Sydney-Santiago (over the antimeridian) ~11,340 km.
    d = haversine_km(48.8566, 2.3522, np.array([51.5074, 48.8566]), np.array([-0.1278, 2.3522]))
    assert abs(d[0] - 343.5) < 2 and d[1] == 0
    assert abs(haversine_km(-33.8688, 151.2093, np.array([-33.4489]), np.array([-70.6693]))[0] - 11340) < 60


@pytest.mark.parametrize("lat,lon,km", [(0, 0, 50), (60, 179.9, 30), (-60, -179.5, 120), (89.9, 0, 50),
                                        (45, 10, 5000)])
def test_bounding_box_holds_every_point_within_the_radius(lat, lon, km):
    lat_min, lat_max, ranges = bounding_box(lat, lon, km)
    rng = np.random.default_rng(1)
    lats, lons = rng.uniform(-90, 90, 200_000), rng.uniform(-180, 180, 200_000)
    inside = haversine_km(lat, lon, lats, lons) <= km
    in_box = (lats >= lat_min) & (lats <= lat_max) & np.any([(lons >= a) & (lons <= b) for a, b in ranges], axis=0)
    assert inside.any() and not (inside & ~in_box).any()


def test_a_damaged_compact_copy_is_made_again(tmp_path, monkeypatch):
    from searchlib.places.gazetteer import Gazetteer

    monkeypatch.setenv("SEARCHLIB_CACHE", str(tmp_path))
    first = Gazetteer.load()
    (copy,) = tmp_path.glob("gazetteer-*.npz")
    copy.write_bytes(copy.read_bytes()[:1000])  # truncated, as by a full disk or a kill
    again = Gazetteer.load()
    assert again.locate([(35.6895, 139.6917)]) == first.locate([(35.6895, 139.6917)])
    assert copy.stat().st_size > 1_000_000 and len(again.cities) == len(first.cities)


def test_indexing_goes_on_without_places_when_the_gazetteer_fails(monkeypatch, caplog):
    from searchlib.catalog import ChangeSet
    from searchlib.places import gazetteer as module
    from searchlib.records import ImageMetadata, ImageRecord
    from searchlib.writer import with_places

    def broken(points):
        raise OSError("geocode.gz: no such file")

    monkeypatch.setattr(module, "locate", broken)
    record = ImageRecord("/p/a.jpg", 1, 1, "h", ImageMetadata(4, 3, "JPEG", gps_lat=35.7, gps_lon=139.7))
    batch = ChangeSet(added=[(record, np.zeros(2, np.float32))])
    assert with_places(batch).added[0][0] == record
    assert "stored without places" in caplog.text
