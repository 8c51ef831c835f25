"""A SQLite catalog opened for searching with ``sqlite3`` alone.

A cold ``searchlib search`` reads a handful of settings, the rows of its hits and a sample of
vectors; importing SQLAlchemy for that took 0.35 s of a 1.1 s query. :class:`QuickCatalog` answers
those reads (:data:`QUICK_READS`) with plain ``sqlite3`` and opens the full
:class:`~searchlib.catalog.full.Catalog` the first time anything else is asked of it (a write, a
filter, a change-log replay, verify), so every caller keeps the one catalog API.

The quick reads return exactly what the full catalog's do (tests compare them row by row). Any
``sqlite3`` error in a quick read is answered by the full catalog instead, which turns database
failures into searchlib errors in one place (:func:`searchlib.catalog.engine.translate_error`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from ..models import ModelIdentity
from ..records import ImageMetadata, ImageRecord, Segment, StoredImage
from .changes import chunks
from .facts import SCHEMA_HEAD, storable_ids

if TYPE_CHECKING:
    from ..places.names import PlaceNames
    from .full import Catalog

#: What a quick catalog answers itself; everything else goes to the full catalog.
QUICK_READS = ("get_setting", "generation", "model_identity", "images", "vectors_of", "sample_vectors",
               "has_media", "place_names")

_META = tuple(f.name for f in fields(ImageMetadata))
_DATETIME_META = frozenset(f.name for f in fields(ImageMetadata) if "datetime" in str(f.type))
_ROW_COLUMNS = ("id", "path", "size", "mtime_ns", "content_hash", *_META, "indexed_at",
                "media", "part", "start", "end", "duration")
_BUSY_TIMEOUT_MS = 30000  # as the full catalog: wait for a writer's commit instead of failing


def open_catalog(path: str | os.PathLike, read_only: bool = False) -> QuickCatalog | Catalog:
    """A SQLite catalog for searching: quick reads through ``sqlite3``, the rest through the full
    catalog, opened when first needed.

    Raises:
        IndexNotFoundError: no catalog there.
        IndexCorruptError: the file cannot be read as a catalog.
    """
    return QuickCatalog(Path(path), read_only=read_only)


def _datetime(value: Any) -> datetime | None:
    """A DateTime column as SQLAlchemy stores it on SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class QuickCatalog:
    """A SQLite catalog whose search-time reads need no SQLAlchemy.

    Args:
        path: the SQLite file.
        read_only: never write (a read-only mount); a WAL database whose shared-memory file cannot
            be made there opens as ``immutable``, as the full catalog does.
    """

    is_sqlite = True

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        self.read_only = read_only
        self._full: Catalog | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        # Each reading thread's connection, with the thread: a server's pool threads come and go
        # (and a search loads vectors in a short-lived thread), so a connection whose thread has
        # ended is closed when the next one opens; keeping them all leaked two descriptors a search.
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._uri = self._choose_uri()
        try:
            revision = self._query("SELECT version_num FROM alembic_version")
        except sqlite3.Error:
            revision = None
        if not revision or revision[0][0] != SCHEMA_HEAD:
            # Not a catalog, an old schema or no schema: the full catalog says which, and migrates.
            self.full()
        self._dtype = np.dtype(self.get_setting("vector_dtype") or "float32")

    def _choose_uri(self) -> str:
        base = f"file:{quote(os.fspath(self.path))}"
        if not self.read_only:
            return f"{base}?mode=rw"
        for flags in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{base}?{flags}", uri=True)
                try:
                    conn.execute("SELECT 1 FROM sqlite_master").close()
                finally:
                    conn.close()
                return f"{base}?{flags}"
            except sqlite3.Error:
                continue
        return f"{base}?mode=ro"

    # -- the full catalog ---------------------------------------------------------------------
    def full(self) -> Catalog:
        """The full catalog (SQLAlchemy), opened on first use."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    from .full import Catalog

                    self._full = Catalog(self.path, read_only=self.read_only)
        return self._full

    @property
    def full_is_open(self) -> bool:
        """Whether something asked for more than the quick reads (the full catalog is open)."""
        return self._full is not None

    def __getattr__(self, name: str):
        # Only reached for names this class lacks: writes, filters, the change log, verify's reads.
        if name.startswith("__") or name in ("_full", "_lock", "_local", "_connections"):
            raise AttributeError(name)
        return getattr(self.full(), name)

    def describe(self) -> str:
        """The catalog's location for messages."""
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            full, self._full = self._full, None
        for _, conn in connections:
            conn.close()
        if full is not None:
            full.close()

    # -- sqlite3 ------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a server's threads read at once, as with SQLAlchemy's pool)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            with self._lock:
                ended = [c for t, c in self._connections if not t.is_alive()]
                self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
                self._connections.append((threading.current_thread(), conn))
            for old in ended:  # its thread is gone, so nobody is using it
                old.close()
            self._local.conn = conn
        return conn

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._connection().execute(sql, tuple(params)).fetchall()

    def _quick(self, name: str, reader, *args):
        """``reader(*args)`` through sqlite3; on a database error, the full catalog's ``name``."""
        try:
            return reader(*args)
        except sqlite3.Error:
            return getattr(self.full(), name)(*args)

    # -- the quick reads (:data:`QUICK_READS`) -------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        def read(key: str, default: str | None) -> str | None:
            rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
            return default if not rows or rows[0][0] is None else rows[0][0]

        return self._quick("get_setting", read, key, default)

    def generation(self) -> int:
        return int(self.get_setting("generation") or 0)

    def model_identity(self) -> ModelIdentity | None:
        raw = self.get_setting("model")
        return ModelIdentity.from_dict(json.loads(raw)) if raw else None

    @property
    def vector_dtype(self) -> str:
        return self._dtype.name

    def images(self, ids: Sequence[int]) -> dict[int, StoredImage]:
        """Rows by id with their tags (missing ids are absent from the result)."""
        return self._quick("images", self._images, ids)

    def _images(self, ids: Sequence[int]) -> dict[int, StoredImage]:
        out: dict[int, StoredImage] = {}
        for chunk in chunks(storable_ids(ids)):
            marks = ",".join("?" * len(chunk))
            labels: dict[int, list[str]] = {}
            for i, label in self._query(f"SELECT image_id, label FROM tags WHERE image_id IN ({marks}) "
                                        "ORDER BY label", chunk):
                labels.setdefault(i, []).append(label)
            columns = ", ".join(f'"{c}"' for c in _ROW_COLUMNS)  # "end" is an SQL keyword
            for row in self._query(f"SELECT {columns} FROM images WHERE id IN ({marks})", chunk):
                out[row[0]] = _stored_image(dict(zip(_ROW_COLUMNS, row)), labels.get(row[0], ()))
        return out

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` stored for these ids (ascending; ids without a vector are left out)."""
        return self._quick("vectors_of", self._vectors_of, ids)

    def _vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        found: list[tuple[int, bytes]] = []
        for chunk in chunks(sorted(set(storable_ids(ids)))):
            found += self._query(f"SELECT image_id, vector FROM embeddings WHERE image_id IN "
                                 f"({','.join('?' * len(chunk))})", chunk)
        found.sort()
        out_ids = np.fromiter((p[0] for p in found), dtype=np.int64, count=len(found))
        if not found:
            return out_ids, np.zeros((0, 0), dtype=np.float32)
        flat = np.frombuffer(b"".join(p[1] for p in found), dtype=self._dtype)
        return out_ids, flat.reshape(len(found), -1).astype(np.float32)

    def has_media(self, media: str) -> bool:
        """Whether any item is of this kind (``image`` | ``video``)."""
        return self._quick("has_media", self._has_media, media)

    def _has_media(self, media: str) -> bool:
        return bool(self._query("SELECT 1 FROM images WHERE media = ? LIMIT 1", (media,)))

    def place_names(self) -> PlaceNames:
        """The places the catalog's images were taken in (a query with "in / at / near ..." asks;
        through the full catalog it cost a cold search SQLAlchemy's import, ~0.3 s)."""
        return self._quick("place_names", self._place_names)

    def _place_names(self) -> PlaceNames:
        from ..places.names import PlaceNames

        return PlaceNames(self._query("SELECT DISTINCT place_city, place_region, place_country, place_country_code "
                                      "FROM images"))

    def sample_vectors(self, n: int, seed: int = 0, distinct: bool = True) -> np.ndarray:
        """About ``n`` stored vectors drawn at random (see :meth:`CatalogReads.sample_vectors`):
        relevance's sample (``distinct=False``) here, a training sample from the full catalog."""
        if distinct:
            return self.full().sample_vectors(n, seed, distinct=True)
        return self._quick("sample_vectors", self._sample_vectors, n, seed, False)

    def _sample_vectors(self, n: int, seed: int = 0, distinct: bool = False) -> np.ndarray:
        ((low, high),) = self._query("SELECT min(image_id), max(image_id) FROM embeddings")
        if low is None:
            return np.zeros((0, 0), dtype=np.float32)
        rng = np.random.default_rng(seed)
        span = int(high) - int(low) + 1
        wanted = np.unique(rng.integers(int(low), int(high) + 1, size=min(span, int(n * 1.2) + 16)))
        ids, vectors = self._vectors_of(wanted.tolist())
        if len(ids) > n:
            vectors = vectors[rng.choice(len(ids), n, replace=False)]
        return vectors


def _stored_image(row: dict, labels: Sequence[str]) -> StoredImage:
    """A row as the full catalog returns it: paths are bytes in the file, datetimes text."""
    meta = ImageMetadata(**{name: _datetime(row[name]) if name in _DATETIME_META else row[name]
                            for name in _META})
    path = row["path"]
    path = os.fsdecode(bytes(path)) if isinstance(path, (bytes, bytearray, memoryview)) else path
    segment = None
    if row["media"] == "video":  # as conditions.stored_image: a video's item is a segment
        segment = Segment(row["part"], row["start"] or 0.0, row["end"] or 0.0, row["duration"] or 0.0)
    record = ImageRecord(path, row["size"], row["mtime_ns"], row["content_hash"], meta, segment)
    return StoredImage(row["id"], record, _datetime(row["indexed_at"]), tuple(labels))
