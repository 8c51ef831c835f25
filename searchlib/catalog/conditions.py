"""SQL conditions and row conversions shared by the catalog's queries: folders as byte ranges, search
filters, and records to rows and back."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime

from sqlalchemy import and_, func, literal, literal_column, or_, select, text

from ..filters import Filters
from ..ocr import fold, words_of
from ..places.distance import bounding_box
from ..places.names import PlaceNames
from ..records import METADATA_FIELDS, ImageMetadata, ImageRecord, StoredImage
from . import schema
from .schema import images, tags


def inside(column, root: str):
    """Rows whose path lies under the folder ``root``: a byte range, so the index on paths is used.

    Everything that starts with ``b"root/"`` sorts in ``[b"root/", b"root0")``: ``"0"`` follows ``"/"``.
    """
    raw = os.fsencode(root).rstrip(b"/")
    return and_(column >= literal(raw + b"/", schema.FsPath), column < literal(raw + b"0", schema.FsPath))


def under_any(column, roots: Sequence[str]):
    """Rows whose path is one of ``roots`` or lies under one."""
    conds = []
    for root in roots:
        conds.append(column == literal(os.fsencode(root).rstrip(b"/"), schema.FsPath))
        conds.append(inside(column, root))
    return or_(*conds) if conds else literal(False)


def filter_conditions(f: Filters, known_places: PlaceNames | None = None, fts: bool = False) -> list:
    """SQL conditions on ``images`` for :class:`~searchlib.filters.Filters`.

    Place names match stored values through ``known_places`` (the places the catalog holds:
    comparing there ignores case and accents, which SQL's ``lower`` cannot do alike on SQLite and
    PostgreSQL); a name that matches none gives no rows. ``near`` becomes a bounding box here;
    the caller checks the exact distance of the rows in it. ``fts``: the catalog has SQLite's
    full-text table for read text.
    """
    conds: list = []
    for name in f.places:
        found = known_places.matching(name) if known_places is not None else {}
        conds.append(or_(*[images.c[f"place_{part}"].in_(sorted(values)) for part, values in found.items()])
                     if found else literal(False))
    if f.near is not None:
        lat_min, lat_max, lon_ranges = bounding_box(f.near[0], f.near[1], f.radius_km)
        conds.append(and_(images.c.gps_lat >= lat_min, images.c.gps_lat <= lat_max,
                          or_(*[and_(images.c.gps_lon >= west, images.c.gps_lon <= east)
                                for west, east in lon_ranges])))
    if f.folder:
        conds.append(inside(images.c.path, os.path.abspath(os.path.expanduser(f.folder))))
    if f.after:
        conds.append(images.c.captured_at >= f.after)
    if f.before:
        conds.append(images.c.captured_at <= f.before)
    if f.camera:
        needle = f"%{f.camera.lower()}%"
        make, model = func.coalesce(images.c.camera_make, ""), func.coalesce(images.c.camera_model, "")
        conds.append(or_(func.lower(make).like(needle), func.lower(model).like(needle),
                         func.lower(make + " " + model).like(needle)))
    if f.min_width:
        conds.append(images.c.width >= f.min_width)
    if f.min_height:
        conds.append(images.c.height >= f.min_height)
    if f.formats:
        wanted = [x.upper().replace("JPG", "JPEG") for x in f.formats]
        conds.append(func.upper(images.c.format).in_(wanted))
    for tag in f.tags:
        conds.append(images.c.id.in_(select(tags.c.image_id).where(tags.c.label == tag.lower())))
    if f.text:
        conds.extend(text_conditions(words_of(f.text), fts))
    return conds


def _like_pattern(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def text_conditions(words: Sequence[str], fts: bool) -> list:
    """Rows whose read text contains every word (folded; substrings match: "pharm" finds PHARMACY).

    With SQLite's FTS5 trigram table (``fts``), words of three characters or more are looked up in
    it; shorter words, and PostgreSQL (where a trigram GIN index serves LIKE), use LIKE."""
    conds: list = []
    long_words = [w for w in words if len(w) >= 3] if fts else []
    if long_words:
        match = " AND ".join('"' + w.replace('"', '""') + '"' for w in long_words)
        conds.append(images.c.id.in_(select(literal_column("rowid")).select_from(text("images_text"))
                                     .where(text("images_text MATCH :match").bindparams(match=match))))
    for w in words:
        if w not in long_words:
            conds.append(images.c.text_folded.like(_like_pattern(w), escape="\\"))
    return conds

def row_values(record: ImageRecord, now: datetime) -> dict:
    meta = record.metadata
    return {"path": record.path, "size": record.size, "mtime_ns": record.mtime_ns,
            "content_hash": record.content_hash, **{name: getattr(meta, name) for name in METADATA_FIELDS},
            "captured_at": record.captured_at, "date_source": record.date_source, "indexed_at": now,
            "text_folded": fold(meta.text) if meta.text else None}

def stored_image(row, labels: Sequence[str]) -> StoredImage:
    meta = ImageMetadata(**{f.name: getattr(row, f.name) for f in fields(ImageMetadata)})
    record = ImageRecord(row.path, row.size, row.mtime_ns, row.content_hash, meta)
    return StoredImage(row.id, record, row.indexed_at, tuple(labels))
