"""Great-circle distances and the latitude/longitude box around a radius (pure numpy)."""

from __future__ import annotations

import math

import numpy as np

#: Mean Earth radius (km), the IUGG value: distances are good to about 0.5 %.
EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Distances in km from ``(lat, lon)`` to each of ``(lats, lons)`` (degrees)."""
    p1, p2 = math.radians(lat), np.radians(np.asarray(lats, dtype=np.float64))
    dphi = p2 - p1
    dlam = np.radians(np.asarray(lons, dtype=np.float64) - lon)
    a = np.sin(dphi / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, list[tuple[float, float]]]:
    """A box that holds every point within ``km`` of ``(lat, lon)``: ``(lat_min, lat_max, lon_ranges)``.

    ``lon_ranges`` is one range, two where the box crosses the antimeridian, or the whole circle
    when the radius reaches a pole (every longitude is then that close). The box is a cheap SQL
    pre-filter; the caller checks the exact distance of the rows it lets through.
    """
    dlat = math.degrees(km / EARTH_RADIUS_KM)
    lat_min, lat_max = lat - dlat, lat + dlat
    if lat_min <= -90 or lat_max >= 90 or km >= math.pi * EARTH_RADIUS_KM / 2:
        return max(lat_min, -90.0), min(lat_max, 90.0), [(-180.0, 180.0)]
    # The widest longitude span within km is at the latitude where the circle touches its meridians.
    dlon = math.degrees(math.asin(min(1.0, math.sin(km / EARTH_RADIUS_KM) / math.cos(math.radians(lat)))))
    west, east = lon - dlon, lon + dlon
    if west < -180:
        return lat_min, lat_max, [(west + 360, 180.0), (-180.0, east)]
    if east > 180:
        return lat_min, lat_max, [(west, 180.0), (-180.0, east - 360)]
    return lat_min, lat_max, [(west, east)]
