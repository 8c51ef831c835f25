"""The catalog: a SQLite database (through SQLAlchemy 2) holding every image's row and vector.

The catalog is the truth; the FAISS file is a cache rebuilt from the vectors stored here. Every
write transaction bumps ``generation`` so that a FAISS file stamped with an older generation is
known to be stale. SQLite runs in WAL mode so that searches read the last committed state while an
indexer writes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from .errors import IndexCorruptError
from .models import ModelIdentity

log = logging.getLogger(__name__)

#: Alembic revision the code expects; tests check it equals the migrations' head.
SCHEMA_HEAD = "0002"

#: Metadata columns exposed on hits and in ``list`` (besides ``path``).
METADATA_FIELDS = (
    "size", "mtime", "content_hash", "width", "height", "format", "taken_at",
    "camera_make", "camera_model", "orientation", "gps_lat", "gps_lon", "indexed_at",
)


class FsPath(TypeDecorator):
    """A file path that survives names that are not valid UTF-8.

    Python represents such names with surrogate escapes, which SQLite's UTF-8 text cannot hold;
    those paths are stored as their raw bytes instead (SQLite columns accept both) and read back
    to the same ``str``, so the file can still be opened.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return os.fsencode(value)

    def process_result_value(self, value, dialect):
        return os.fsdecode(value) if isinstance(value, bytes) else value


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    """One indexed image file."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String, index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String)
    taken_at: Mapped[datetime | None] = mapped_column()
    camera_make: Mapped[str | None] = mapped_column(String)
    camera_model: Mapped[str | None] = mapped_column(String)
    orientation: Mapped[int | None] = mapped_column(Integer)
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    indexed_at: Mapped[datetime] = mapped_column()

    def metadata_dict(self) -> dict:
        """JSON-ready metadata (datetimes as ISO 8601 strings; mtime in seconds)."""
        out: dict = {}
        for name in METADATA_FIELDS:
            value = self.mtime_ns / 1e9 if name == "mtime" else getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


class EmbeddingRow(Base):
    """The image's normalized float32 vector, stored durably so any index can be rebuilt."""

    __tablename__ = "embeddings"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class TagRow(Base):
    """A label given to an image by zero-shot classification (``searchlib tag``)."""

    __tablename__ = "tags"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String, primary_key=True)
    score: Mapped[float] = mapped_column(Float)


class SettingRow(Base):
    """Key/value facts about the index: the model identity, the generation counter."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


@dataclass
class NewImage:
    """An image ready to be written: its file facts, metadata and vector."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    metadata: dict
    vector: np.ndarray


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cur.execute("PRAGMA busy_timeout=30000")  # readers and one writer wait instead of failing
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Catalog:
    """The SQLite catalog of one index directory.

    Args:
        path: the database file (created when ``create`` is true).
        create: create the file and schema if missing.
    """

    def __init__(self, path: Path, create: bool = False):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise IndexCorruptError(f"no catalog at {self.path}")
        self.engine = create_engine(f"sqlite:///{self.path}")
        event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._ensure_schema()
        except (DatabaseError, OperationalError) as e:
            raise IndexCorruptError(
                f"catalog {self.path} cannot be read ({e.orig if hasattr(e, 'orig') else e}); "
                "move the index directory away and index again"
            ) from e

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------
    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            has = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'")
            ).first()
            if not has:
                return None
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            return row[0] if row else None

    def _ensure_schema(self) -> None:
        current = self.schema_revision()
        if current == SCHEMA_HEAD:
            return  # the common case costs one query, no alembic import
        from .migrate import upgrade

        log.info("migrating catalog %s from %s to %s", self.path, current, SCHEMA_HEAD)
        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    # -- settings ----------------------------------------------------------------------------
    def _get(self, session: Session, key: str) -> str | None:
        # A column select, not session.get: it must see values changed by Core UPDATEs.
        return session.scalar(select(SettingRow.value).where(SettingRow.key == key))

    def _set(self, session: Session, key: str, value: str) -> None:
        session.merge(SettingRow(key=key, value=value))

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self.session() as s:
            value = self._get(s, key)
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        with self.session() as s:
            self._set(s, key, value)

    def model_identity(self) -> ModelIdentity | None:
        with self.session() as s:
            raw = self._get(s, "model")
        return ModelIdentity.from_dict(json.loads(raw)) if raw else None

    def set_model_identity(self, identity: ModelIdentity) -> None:
        with self.session() as s:
            self._set(s, "model", json.dumps(identity.to_dict()))
            self._bump(s)

    def generation(self) -> int:
        with self.session() as s:
            return int(self._get(s, "generation") or 0)

    def _bump(self, session: Session) -> None:
        # UPDATE ... SET value = value + 1 inside the writer's transaction: atomic with its rows.
        res = session.execute(
            update(SettingRow).where(SettingRow.key == "generation")
            .values(value=func.cast(func.cast(SettingRow.value, Integer) + 1, String))
        )
        if res.rowcount == 0:
            session.add(SettingRow(key="generation", value="1"))

    # -- reads -------------------------------------------------------------------------------
    def count(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(ImageRow)) or 0

    def file_states(self) -> dict[str, tuple[int, int, int]]:
        """``path -> (id, size, mtime_ns)`` of every row (change detection)."""
        with self.session() as s:
            rows = s.execute(select(ImageRow.path, ImageRow.id, ImageRow.size, ImageRow.mtime_ns))
            return {p: (i, sz, mt) for p, i, sz, mt in rows}

    def filtered_ids(self, filters) -> np.ndarray:
        """Ids of rows matching :class:`~searchlib.filters.Filters`."""
        from .filters import apply

        with self.session() as s:
            ids = list(s.scalars(apply(select(ImageRow.id), filters)))
        return np.asarray(ids, dtype=np.int64)

    def all_hashes(self) -> list[str]:
        """Content hashes of every row."""
        with self.session() as s:
            return list(s.scalars(select(ImageRow.content_hash)))

    def hashes_of(self, ids: Iterable[int]) -> dict[str, list[int]]:
        """``content_hash -> [ids]`` for the given row ids."""
        wanted = [int(i) for i in ids]
        out: dict[str, list[int]] = {}
        with self.session() as s:
            for start in range(0, len(wanted), 900):
                stmt = select(ImageRow.content_hash, ImageRow.id).where(ImageRow.id.in_(wanted[start:start + 900]))
                for h, i in s.execute(stmt):
                    out.setdefault(h, []).append(i)
        return out

    def rows(self, ids: Sequence[int]) -> dict[int, ImageRow]:
        """Rows by id (missing ids are absent from the result)."""
        out: dict[int, ImageRow] = {}
        with self.session() as s:
            for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
                chunk = [int(i) for i in ids[start:start + 900]]
                out.update({r.id: r for r in s.scalars(select(ImageRow).where(ImageRow.id.in_(chunk)))})
        return out

    def iter_rows(self, batch: int = 1000) -> Iterator[ImageRow]:
        """Every row ordered by path."""
        with self.session() as s:
            yield from s.scalars(select(ImageRow).order_by(ImageRow.path).execution_options(yield_per=batch))

    def vectors_by_hash(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of images with these content hashes (reused instead of re-embedding)."""
        wanted = list(set(hashes))
        out: dict[str, np.ndarray] = {}
        with self.session() as s:
            for start in range(0, len(wanted), 900):
                stmt = (select(ImageRow.content_hash, EmbeddingRow.vector)
                        .join(EmbeddingRow, EmbeddingRow.image_id == ImageRow.id)
                        .where(ImageRow.content_hash.in_(wanted[start:start + 900])))
                for h, blob in s.execute(stmt):
                    out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    def snapshot_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(generation, ids, vectors)`` read in one transaction, so all three agree."""
        with self.session() as s:
            gen = int(self._get(s, "generation") or 0)
            pairs = s.execute(select(EmbeddingRow.image_id, EmbeddingRow.vector)
                              .order_by(EmbeddingRow.image_id)).all()
        ids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        if not pairs:
            return gen, ids, np.zeros((0, 0), dtype=np.float32)
        vectors = np.frombuffer(b"".join(p[1] for p in pairs), dtype=np.float32).reshape(len(pairs), -1)
        return gen, ids, vectors

    # -- writes ------------------------------------------------------------------------------
    def replace_tags(self, labels: Sequence[str], rows: Sequence[TagRow]) -> None:
        """Drop every tag with one of ``labels`` and store ``rows`` instead, in one transaction."""
        with self.session() as s:
            s.execute(delete(TagRow).where(TagRow.label.in_(list(labels))))
            s.add_all(rows)

    def tags_of(self, ids: Sequence[int]) -> dict[int, list[str]]:
        """Labels per image id."""
        out: dict[int, list[str]] = {}
        with self.session() as s:
            for start in range(0, len(ids), 900):
                stmt = select(TagRow.image_id, TagRow.label).where(TagRow.image_id.in_(list(ids[start:start + 900])))
                for i, label in s.execute(stmt):
                    out.setdefault(i, []).append(label)
        return out

    @staticmethod
    def _delete_chunk(s: Session, chunk: list[int]) -> None:
        s.execute(delete(TagRow).where(TagRow.image_id.in_(chunk)))
        s.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id.in_(chunk)))
        s.execute(delete(ImageRow).where(ImageRow.id.in_(chunk)))

    def delete_ids(self, ids: Sequence[int]) -> int:
        """Delete rows and vectors with these ids (either may be missing); returns the generation."""
        with self.session() as s:
            for start in range(0, len(ids), 900):
                self._delete_chunk(s, [int(i) for i in ids[start:start + 900]])
            self._bump(s)
            s.flush()
            return int(self._get(s, "generation") or 0)

    def write_batch(self, added: Sequence[NewImage], updated: Sequence[tuple[int, NewImage]] = (),
                    removed: Sequence[int] = ()) -> tuple[list[int], int]:
        """Apply one batch in one transaction; returns (ids of added rows, new generation)."""
        now = utcnow()
        new_ids: list[int] = []
        with self.session() as s:
            if removed:
                for start in range(0, len(removed), 900):
                    chunk = [int(i) for i in removed[start:start + 900]]
                    self._delete_chunk(s, chunk)
            for image_id, item in updated:
                s.execute(update(ImageRow).where(ImageRow.id == image_id).values(**_row_values(item, now)))
                s.execute(update(EmbeddingRow).where(EmbeddingRow.image_id == image_id)
                          .values(vector=_blob(item.vector)))
            if added:
                # Core bulk inserts (not ORM objects): fast enough for GPU-rate indexing.
                stmt = insert(ImageRow).returning(ImageRow.id, sort_by_parameter_order=True)
                new_ids = list(s.execute(stmt, [_row_values(item, now) for item in added]).scalars())
                s.execute(insert(EmbeddingRow), [{"image_id": i, "vector": _blob(item.vector)}
                                                 for i, item in zip(new_ids, added)])
            self._bump(s)
            s.flush()
            gen = int(self._get(s, "generation") or 0)
        return new_ids, gen


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _row_values(item: NewImage, now: datetime) -> dict:
    meta = item.metadata
    return dict(
        path=item.path, size=item.size, mtime_ns=item.mtime_ns, content_hash=item.content_hash,
        width=meta.get("width", 0), height=meta.get("height", 0), format=meta.get("format"),
        taken_at=meta.get("taken_at"), camera_make=meta.get("camera_make"),
        camera_model=meta.get("camera_model"), orientation=meta.get("orientation"),
        gps_lat=meta.get("gps_lat"), gps_lon=meta.get("gps_lon"), indexed_at=now,
    )
