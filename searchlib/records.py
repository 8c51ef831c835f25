"""The typed records that flow from a file on disk to a catalog row and back out as a hit.

:class:`ImageMetadata` is the one declaration of the metadata searchlib keeps about an image: the
catalog's columns, the JSON of hits and listings, and the metadata tests all derive from its
fields. Records are frozen: each pipeline stage makes a new one (``dataclasses.replace``) instead of
editing the one it was handed, so no record changes under another thread's feet.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields
from datetime import datetime


@dataclass(frozen=True)
class ImageMetadata:
    """What searchlib stores about an image besides its vector.

    Width and height are as displayed (after the EXIF orientation). ``taken_at`` is the EXIF
    capture time (camera-local, naive). The ``place_*`` fields are where the GPS position lies
    (reverse geocoded offline when the image is written to the index; see
    :mod:`searchlib.places.gazetteer`); JSON gives them as one ``place`` object.
    """

    width: int
    height: int
    format: str | None
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    orientation: int | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    text: str | None = None  # words read in the image (index --read-text), one line per text line
    place_city: str | None = None
    place_region: str | None = None
    place_country: str | None = None
    place_country_code: str | None = None


def content_hash(data: bytes) -> str:
    """The content hash of a file's bytes (SHA-256, hex): how a file is recognised when it moves, is
    copied, or is given again as a query image. The one definition of the rule."""
    return content_hasher(data).hexdigest()


def content_hasher(data: bytes = b""):
    """The hash object of :func:`content_hash`, for files read in pieces (``update``, then
    ``hexdigest``): the same rule for a video that need not fit in memory."""
    return hashlib.sha256(data)


#: Names of the metadata fields, in declaration order.
METADATA_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ImageMetadata))
#: The fields that say where an image was taken, in words, and their names inside JSON's ``place``.
PLACE_FIELDS: dict[str, str] = {name: name.removeprefix("place_") for name in METADATA_FIELDS
                                if name.startswith("place_")}


def place_of(metadata: ImageMetadata) -> dict | None:
    """``{"city", "region", "country", "country_code"}`` of an image, or None when it has no place."""
    place = {key: getattr(metadata, name) for name, key in PLACE_FIELDS.items()}
    return place if any(place.values()) else None


def file_time(mtime_ns: int) -> datetime:
    """A file modification time as a naive local datetime (how EXIF times read too)."""
    return datetime.fromtimestamp(mtime_ns / 1e9)


@dataclass(frozen=True)
class Segment:
    """Which part of a video an item stands for: its number in the file (0..n-1) and its time range
    in seconds, with the whole video's duration."""

    part: int
    start: float
    end: float
    duration: float


@dataclass(frozen=True)
class ImageRecord:
    """One item as indexed: where its file is, which bytes, and what it shows (not its vector).

    An item is a whole image (``segment`` None) or one segment of a video; a video's segments
    share path, size, mtime and content hash, and are told apart by ``segment.part``.
    """

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    metadata: ImageMetadata
    segment: Segment | None = None

    @property
    def media(self) -> str:
        """``image`` or ``video``."""
        return "image" if self.segment is None else "video"

    @property
    def part(self) -> int:
        """The item's number within its file (0 for an image)."""
        return 0 if self.segment is None else self.segment.part

    @property
    def captured_at(self) -> datetime:
        """When the picture was taken: EXIF time, else the file's modification time."""
        return self.metadata.taken_at or file_time(self.mtime_ns)

    @property
    def date_source(self) -> str:
        """``exif`` or ``file``: where :attr:`captured_at` comes from."""
        return "exif" if self.metadata.taken_at else "file"


@dataclass(frozen=True)
class StoredImage:
    """A catalog row: the record with its id, when it was indexed, and its tags."""

    id: int
    record: ImageRecord
    indexed_at: datetime
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def path(self) -> str:
        return self.record.path

    def to_dict(self) -> dict:
        """JSON-ready metadata: file facts, every :class:`ImageMetadata` field (the place fields as
        one ``place`` object, or null), the capture date and its source, tags. Datetimes are ISO
        8601; ``mtime`` is in seconds. Paths that are not valid UTF-8 follow :func:`path_fields`."""
        rec = self.record
        out: dict = {"size": rec.size, "mtime": rec.mtime_ns / 1e9, "content_hash": rec.content_hash}
        for name in METADATA_FIELDS:
            if name in PLACE_FIELDS:
                continue
            value = getattr(rec.metadata, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["place"] = place_of(rec.metadata)
        out["date"] = rec.captured_at.isoformat()
        out["date_source"] = rec.date_source
        out["indexed_at"] = self.indexed_at.isoformat()
        out["tags"] = list(self.tags)
        out["media"] = rec.media
        if rec.segment is not None:
            seg = rec.segment
            out.update(start=seg.start, end=seg.end, duration=seg.duration, part=seg.part)
        return out


def path_fields(path: str) -> dict:
    """``{"path": ...}`` for JSON, valid UTF-8 whatever the file name.

    File names are bytes on Linux; Python holds bytes that are not UTF-8 as surrogate escapes,
    which no JSON or Parquet writer may emit. Such a path becomes text with U+FFFD in place of the
    bad bytes plus ``path_bytes``, the original bytes in base64 (ripgrep's convention); valid
    names get ``path`` only.
    """
    try:
        path.encode("utf-8")
        return {"path": path}
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return {"path": raw.decode("utf-8", "replace"), "path_bytes": base64.b64encode(raw).decode("ascii")}
