"""Search filters on catalog metadata, applied inside the vector search so ``k`` hits come back
whenever they exist. This module only describes them; the catalog turns them into SQL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import ConfigError

#: The radius of ``--near`` when ``--within`` is not given (km): a town and its surroundings.
DEFAULT_WITHIN_KM = 10.0

#: The longest ``camera`` text and tag accepted. Camera names and labels are short; the bound keeps
#: the SQL pattern within what every database takes (SQLite refuses LIKE patterns over 50,000 bytes).
MAX_TEXT = 200
#: The longest ``folder`` accepted (well above any file system's path limit).
MAX_FOLDER = 8192
#: The most formats or tags one search may name.
MAX_VALUES = 100
#: The largest ``min_width`` / ``min_height`` accepted (within every database's integer range).
MAX_PIXELS_SIDE = 1_000_000_000


@dataclass(frozen=True)
class Filters:
    """Conditions on catalog metadata.

    Attributes:
        folder: only images under this folder.
        after, before: capture time (EXIF, else file modification time) bounds, inclusive.
        camera: case-insensitive substring of the camera make or model.
        min_width, min_height: minimum pixel size (as displayed).
        formats: image formats (``JPEG``, ``PNG``, ...), case-insensitive.
        tags: labels stored by ``searchlib tag``; an image needs all of them.
        text: words read in the image (``index --read-text``); an image needs all of them, each
            as a case- and accent-insensitive substring.
        places: place names (city, region, country or country code, as reverse geocoded from
            GPS; case and accents do not count); an image needs all of them ("Lisbon",
            "Portugal").
        near: ``(lat, lon)``: only images whose GPS position lies within ``within_km`` of it.
        within_km: the radius for ``near`` (default :data:`DEFAULT_WITHIN_KM`).
    """

    folder: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    camera: str | None = None
    min_width: int | None = None
    min_height: int | None = None
    formats: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    text: str | None = None
    places: tuple[str, ...] = ()
    near: tuple[float, float] | None = None
    within_km: float | None = None

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; stored as tuples so Filters stays hashable.
        object.__setattr__(self, "formats", tuple(self.formats or ()))
        object.__setattr__(self, "tags", tuple(self.tags or ()))
        object.__setattr__(self, "places", tuple(p.strip() for p in self.places or () if p and p.strip()))
        if self.near is not None:
            lat, lon = (float(x) for x in self.near)
            if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
                raise ConfigError(f"--near needs a latitude in -90..90 and a longitude in -180..180, not "
                                  f"{lat:g},{lon:g}")
            object.__setattr__(self, "near", (lat, lon))
        if self.within_km is not None:
            if self.near is None:
                raise ConfigError("--within needs --near LAT,LON (the centre of the circle)")
            if not (math.isfinite(self.within_km) and self.within_km > 0):
                raise ConfigError(f"--within must be a distance in km above 0, not {self.within_km:g}")
        self._check_bounds()
        if self.after and self.before and self.after > self.before:
            raise ConfigError(f"the date range is empty: after {self.after:%Y-%m-%d} is later than before "
                              f"{self.before:%Y-%m-%d}")

    def _check_bounds(self) -> None:
        """Refuse values no image can match and no database should be handed (typed, not a 500)."""
        for name, value, limit in (("--in", self.folder, MAX_FOLDER), ("--camera", self.camera, MAX_TEXT),
                                   ("--text", self.text, MAX_TEXT)):
            if value is not None and len(value) > limit:
                raise ConfigError(f"{name} is {len(value):,} characters long; at most {limit:,} are accepted")
        for name, values in (("--format", self.formats), ("--tag", self.tags), ("--place", self.places)):
            if len(values) > MAX_VALUES:
                raise ConfigError(f"{len(values)} {name} values; at most {MAX_VALUES} are accepted")
            if any(len(str(v)) > MAX_TEXT for v in values):
                raise ConfigError(f"a {name} value is longer than {MAX_TEXT} characters")
        for name, pixels in (("--min-width", self.min_width), ("--min-height", self.min_height)):
            if pixels is not None and not 0 <= pixels <= MAX_PIXELS_SIDE:
                raise ConfigError(f"{name} must be 0..{MAX_PIXELS_SIDE:,}, not {pixels}")

    @classmethod
    def from_strings(cls, folder: str | None = None, after: str | None = None, before: str | None = None,
                     camera: str | None = None, min_width: int | None = None, min_height: int | None = None,
                     formats: Sequence[str] = (), tags: Sequence[str] = (), places: Sequence[str] = (),
                     near: str | None = None, within_km: float | None = None, text: str | None = None) -> Filters:
        """Filters as a command line or a URL gives them: dates as text (``after`` from the start of
        its period, ``before`` to its end, see :func:`parse_date`), ``near`` as ``"LAT,LON"``,
        empty strings meaning "not set".

        Raises:
            ConfigError: a date or position that cannot be read, an empty date range, or a value out
                of bounds (texts longer than :data:`MAX_TEXT`, more than :data:`MAX_VALUES` tags...).
        """
        return cls(folder=folder or None, after=parse_date(after) if after else None,
                   before=parse_date(before, end=True) if before else None, camera=camera or None,
                   min_width=min_width, min_height=min_height, formats=tuple(formats or ()), tags=tuple(tags or ()),
                   places=tuple(places or ()), near=parse_position(near) if near else None, within_km=within_km,
                   text=(text or "").strip() or None)

    @property
    def radius_km(self) -> float:
        """The radius of ``near``: ``within_km``, else :data:`DEFAULT_WITHIN_KM`."""
        return self.within_km if self.within_km is not None else DEFAULT_WITHIN_KM

    def is_empty(self) -> bool:
        return not any([self.folder, self.after, self.before, self.camera, self.min_width,
                        self.min_height, self.formats, self.tags, self.places, self.near, self.text])


def parse_position(text: str) -> tuple[float, float]:
    """``"38.72,-9.14"`` (latitude, longitude in degrees) -> ``(38.72, -9.14)``.

    Raises:
        ConfigError: not two numbers separated by a comma.
    """
    parts = (text or "").replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError(text)
        return float(parts[0]), float(parts[1])
    except ValueError as e:
        raise ConfigError(f"cannot read position {text!r}; use LAT,LON in degrees, e.g. 38.72,-9.14") from e


def parse_date(text: str, end: bool = False) -> datetime:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD[THH:MM[:SS]]``; ``end`` gives the last moment of a period.

    Raises:
        ConfigError: not a date in one of those forms.
    """
    text = (text or "").strip()
    for fmt, unit in (("%Y", "year"), ("%Y-%m", "month"), ("%Y-%m-%d", "day")):
        try:
            start = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not end:
            return start
        try:
            if unit == "year":
                nxt = start.replace(year=start.year + 1)
            elif unit == "month":
                nxt = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
            else:
                nxt = start + timedelta(days=1)
        except (ValueError, OverflowError):  # the end of year 9999
            return datetime.max
        return nxt - timedelta(microseconds=1)
    try:
        when = datetime.fromisoformat(text)
        # Stored dates are naive local time (as EXIF's are): compare like with like.
        return when.astimezone().replace(tzinfo=None) if when.tzinfo else when
    except ValueError as e:
        raise ConfigError(f"cannot read date {text[:40]!r}; use YYYY, YYYY-MM or YYYY-MM-DD") from e
