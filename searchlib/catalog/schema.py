"""The catalog's tables, derived from the records they hold.

The metadata columns of ``images`` are generated from the fields of
:class:`~searchlib.records.ImageMetadata`, so adding a metadata field means adding it there (and a
migration: migrations are frozen history and spell their columns out).
"""

from __future__ import annotations

import os
import typing
from dataclasses import fields
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

from ..records import ImageMetadata

metadata = MetaData()

#: 64-bit ids on PostgreSQL; on SQLite an INTEGER PRIMARY KEY (the rowid alias) is already 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")


class FsPath(TypeDecorator):
    """A file path stored as its raw bytes (``os.fsencode``), read back as the same ``str``.

    File names are bytes; storing bytes keeps names that are not valid UTF-8 exact, and makes a
    folder filter a byte-prefix range that works alike on SQLite and PostgreSQL (and uses the
    unique index on ``path``).
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or isinstance(value, bytes):
            return value
        return os.fsencode(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return os.fsdecode(bytes(value)) if isinstance(value, (bytes, bytearray, memoryview)) else value


_SQL_TYPES = {int: Integer, float: Float, str: String, datetime: DateTime}


def _metadata_columns() -> list[Column]:
    hints = typing.get_type_hints(ImageMetadata)
    columns = []
    for f in fields(ImageMetadata):
        args = typing.get_args(hints[f.name])
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hints[f.name])
        columns.append(Column(f.name, _SQL_TYPES[base](), nullable=optional))
    return columns


images = Table(
    "images", metadata,
    Column("id", Id, primary_key=True),
    Column("path", FsPath, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("content_hash", String, nullable=False, index=True),
    *_metadata_columns(),
    Column("captured_at", DateTime, nullable=False, index=True),  # EXIF time, else file time
    Column("date_source", String, nullable=False),  # exif | file
    Column("indexed_at", DateTime, nullable=False),
    Column("text_folded", String, nullable=True),  # ``text`` folded for matching (ocr.fold)
    sqlite_autoincrement=True,  # an id is never handed to another photo (migration 0004)
)

#: The distinct places of an index are read from this index alone (a query naming a place), and
#: a filter on a country uses it (1M rows: 0.6 s instead of 1.5 s for the distinct places).
Index("ix_images_place", images.c.place_country, images.c.place_region, images.c.place_city,
      images.c.place_country_code)

#: The image's normalized vector (float32, or float16 when the index stores half precision).
embeddings = Table(
    "embeddings", metadata,
    Column("image_id", Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("vector", LargeBinary, nullable=False),
)

#: Labels given by zero-shot classification (``searchlib tag``).
tags = Table(
    "tags", metadata,
    Column("image_id", Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("label", String, primary_key=True),
    Column("score", Float, nullable=False),
    Index("ix_tags_label", "label"),
)

#: Key/value facts: the model identity, the generation counter, index settings.
settings = Table(
    "settings", metadata,
    Column("key", String, primary_key=True),
    Column("value", String, nullable=False),
)

#: Files that could not be used, by size and mtime: an unchanged bad file is not retried.
failures = Table(
    "failures", metadata,
    Column("path", FsPath, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("error", String, nullable=False),
    Column("failed_at", DateTime, nullable=False),
)

#: Which image ids each generation touched (added, updated, moved or removed): a FAISS cache
#: stamped with an older generation catches up by replaying these instead of rebuilding.
changes = Table(
    "changes", metadata,
    Column("generation", BigInteger, primary_key=True),
    Column("image_id", BigInteger, primary_key=True),
)
