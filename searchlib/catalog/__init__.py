"""The catalog: the one place that speaks SQL. SQLite by default, PostgreSQL by URL.

The catalog is the truth; the FAISS file is a cache rebuilt (or caught up) from the vectors stored
here. Every write is one transaction that starts by bumping ``generation``: on PostgreSQL the bump
locks that row, so concurrent writers commit one after another and generations follow commit
order; on SQLite the write lock does the same. Each generation records the image ids it touched
(``changes``), so a cache stamped with an older generation replays them instead of rebuilding.

SQLite runs in WAL mode so that readers see the last committed state while an indexer writes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger,
    and_,
    create_engine,
    delete,
    event,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexNotFoundError,
    IndexReadOnlyError,
    SearchlibError,
    StorageFullError,
)
from ..filters import Filters
from ..models import ModelIdentity
from ..records import METADATA_FIELDS, ImageMetadata, ImageRecord, StoredImage
from . import schema
from .schema import changes, embeddings, failures, images, settings, tags

log = logging.getLogger(__name__)

#: Alembic revision the code expects; tests check it equals the migrations' head.
SCHEMA_HEAD = "0003"
#: Values bound in one ``IN (...)`` (SQLite's historical limit is 999 bound parameters).
MAX_BOUND = 900
#: Generations whose changes are kept; a cache older than that rebuilds instead of replaying.
CHANGES_KEPT = 4096
#: Vector storage types (``--vector-dtype``).
VECTOR_DTYPES = ("float32", "float16")


def chunks(items: Sequence, size: int = MAX_BOUND) -> Iterator[list]:
    """Consecutive slices of at most ``size`` items (for ``IN`` lists)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class FileState:
    """A catalog row's change-detection facts."""

    id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FailedFile:
    """A file that could not be indexed, remembered by size and mtime."""

    path: str
    size: int
    mtime_ns: int
    error: str


@dataclass
class ChangeSet:
    """One batch of writes, applied in one transaction (see :meth:`Catalog.apply`).

    Vectors are unit-norm float32 rows; ``updated`` keeps the id of a file whose bytes changed,
    ``moved`` the id (and vector) of a row whose file now lives at another path.
    """

    added: list[tuple[ImageRecord, np.ndarray]] = field(default_factory=list)
    updated: list[tuple[int, ImageRecord, np.ndarray]] = field(default_factory=list)
    moved: list[tuple[int, ImageRecord, np.ndarray]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    forget_failures: list[str] = field(default_factory=list)
    identity: ModelIdentity | None = None  # recorded with a new index's first batch

    def is_empty(self) -> bool:
        return not (self.added or self.updated or self.moved or self.removed or self.failed
                    or self.forget_failures or self.identity)


@dataclass(frozen=True)
class Applied:
    """What :meth:`Catalog.apply` did: the new generation, the one before, every touched id and the
    vectors now stored for the ids that have one (touched ids without a vector were removed)."""

    generation: int
    previous: int
    touched: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    added_ids: list[int]


@dataclass(frozen=True)
class Consistency:
    """What :meth:`Catalog.consistency` found."""

    images: int
    stored_vectors: int
    rows_without_vector: list[int]
    orphan_vectors: list[int]
    bad_vectors: list[int]


def _translate(context) -> None:
    """One place where database failures become searchlib errors with a one-line message."""
    original = context.original_exception
    message = str(original).lower()
    url = "the catalog"
    if context.engine is not None:
        u = context.engine.url
        url = (u.database or "").removeprefix("file:").split("?")[0] if u.get_backend_name() == "sqlite" \
            else u.render_as_string(hide_password=True)
    if "malformed" in message or "not a database" in message or "disk i/o error" in message:
        reason = str(original).splitlines()[0]
        raise IndexCorruptError(f"the catalog {url} is damaged and cannot be read ({reason}); restore it from a "
                                "backup, or move the index directory away and index again") from original
    if "database or disk is full" in message or "no space left" in message or "disk full" in message:
        raise StorageFullError(f"disk full while writing the catalog {url}; free some space and run again "
                               "(work committed so far is kept)") from original
    if "readonly database" in message or "read-only" in message:
        raise IndexReadOnlyError(f"the catalog {url} is read-only: searching works, writing does not; "
                                 "index into a writable copy") from original
    if "database is locked" in message:
        raise IndexBusyError(f"the catalog {url} stayed locked by another process; try again when it "
                             "has finished") from original


class Catalog:
    """The catalog of one index: rows, vectors, tags, settings, failures and the change log.

    Args:
        url: a SQLAlchemy URL (``postgresql+psycopg://...``) or a SQLite file path.
        create: create the database schema if missing (SQLite: the file too).
        read_only: open without writing (a read-only mount); writes raise
            :class:`~searchlib.errors.IndexReadOnlyError`.
    """

    def __init__(self, url: str | os.PathLike, create: bool = False, read_only: bool = False):
        self.url, self.path = _resolve_url(url)
        self.read_only = read_only
        self.is_sqlite = self.path is not None
        if self.is_sqlite and not self.path.exists() and not create:
            raise IndexNotFoundError(f"no catalog at {self.path}")
        self.engine = self._engine()
        try:
            self._ensure_schema(create)
        except SearchlibError:
            self.engine.dispose()
            raise
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise IndexCorruptError(f"catalog {self.describe()} cannot be read ({_first_line(e)}); restore it or "
                                    "move the index directory away and index again") from e
        self._dtype = np.dtype(self.get_setting("vector_dtype") or "float32")

    def describe(self) -> str:
        """The catalog's location for messages (no password)."""
        return str(self.path) if self.is_sqlite else self.engine.url.render_as_string(hide_password=True)

    def _engine(self) -> Engine:
        if self.is_sqlite:
            if self.read_only:
                engine = _read_only_sqlite(self.path)
            else:
                engine = create_engine(f"sqlite:///{self.path}")
                event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(self.url, pool_pre_ping=True)
        event.listen(engine, "handle_error", _translate)
        return engine

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------
    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            if not conn.dialect.has_table(conn, "alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def _ensure_schema(self, create: bool) -> None:
        current = self.schema_revision()
        if current == SCHEMA_HEAD:
            return  # the common case costs one query, no alembic import
        if current is None and not create:
            raise IndexNotFoundError(f"no searchlib catalog at {self.describe()}; create one with "
                                     "'searchlib index PATH'")
        if self.read_only:
            raise IndexReadOnlyError(f"the catalog {self.describe()} needs a schema upgrade ({current} to "
                                     f"{SCHEMA_HEAD}), which a read-only index cannot take; open it once writable")
        from ..migrate import upgrade

        with self._migration_lock():
            current = self.schema_revision()  # another process may have migrated meanwhile
            if current != SCHEMA_HEAD:
                log.info("migrating catalog %s from %s to %s", self.describe(), current, SCHEMA_HEAD)
                upgrade(self.engine)

    @contextmanager
    def _migration_lock(self):
        """Serialize schema creation: two processes creating one index must not both migrate."""
        if self.is_sqlite:
            import fcntl

            fd = os.open(str(self.path) + ".migrate-lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
        else:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                    conn.commit()

    @contextmanager
    def writer_lock(self, directory: Path, roots: Sequence[str] | None = None) -> Iterator[None]:
        """Hold the right to write (see :meth:`searchlib.index.Index.writer`).

        SQLite: one writer per index, a file lock in ``directory``. PostgreSQL: writers on different
        folders run at once (each folder has an advisory lock; the whole catalog, ``roots=None``,
        excludes them all); rows stay unique because ``path`` is, and :meth:`apply` turns a
        conflicting insert into an update under the generation lock.
        """
        if self.is_sqlite:
            from ..locks import writer_lock

            with writer_lock(directory):
                yield
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            keys = [_lock_key(os.fsencode(os.path.abspath(r))) for r in roots] if roots else []
            taken: list[tuple[str, int]] = []
            try:
                shared = "pg_try_advisory_lock_shared" if keys else "pg_try_advisory_lock"
                if not conn.execute(text(f"SELECT {shared}(:k)"), {"k": _WHOLE_CATALOG_KEY}).scalar():
                    raise IndexBusyError(f"another searchlib process is writing the whole catalog {self.describe()} "
                                         "(verify --repair or a tag run); wait for it to finish and run again")
                taken.append(("pg_advisory_unlock_shared" if keys else "pg_advisory_unlock", _WHOLE_CATALOG_KEY))
                for key, root in zip(keys, roots or ()):
                    if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                        raise IndexBusyError(f"another searchlib process is indexing {root} into {self.describe()}; "
                                             "wait for it to finish and run again")
                    taken.append(("pg_advisory_unlock", key))
                yield
            finally:
                for fn, key in reversed(taken):
                    conn.execute(text(f"SELECT {fn}(:k)"), {"k": key})

    def quick_check(self) -> str | None:
        """A structural check of the database (SQLite ``quick_check``): None if sound, else the problem."""
        if not self.is_sqlite:
            return None
        try:
            with self.engine.connect() as conn:
                result = conn.exec_driver_sql("PRAGMA quick_check(1)").scalar()
        except IndexCorruptError as e:
            return str(e)
        return None if result == "ok" else str(result)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self.read_only:
            raise IndexReadOnlyError(f"the index at {self.describe()} is read-only: searching works, "
                                     "writing does not; index into a writable copy")
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if not self.is_sqlite:  # one consistent snapshot for every statement of the read
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    # -- settings ----------------------------------------------------------------------------
    @staticmethod
    def _get(conn: Connection, key: str) -> str | None:
        return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()

    def _set(self, conn: Connection, key: str, value: str) -> None:
        if conn.execute(update(settings).where(settings.c.key == key).values(value=value)).rowcount == 0:
            conn.execute(settings.insert().values(key=key, value=value))

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self._read() as conn:
            value = self._get(conn, key)
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as conn:
            self._set(conn, key, value)

    def model_identity(self) -> ModelIdentity | None:
        raw = self.get_setting("model")
        return ModelIdentity.from_dict(json.loads(raw)) if raw else None

    @property
    def vector_dtype(self) -> str:
        return self._dtype.name

    def set_vector_dtype(self, dtype: str) -> None:
        """Choose how vectors are stored; only while the catalog holds none."""
        if dtype not in VECTOR_DTYPES:
            raise SearchlibError(f"unknown vector dtype {dtype!r}; use float32 or float16")
        if dtype == self._dtype.name:
            return
        if self.count():
            raise SearchlibError(f"this index stores {self._dtype.name} vectors; --vector-dtype {dtype} needs a "
                                 "new index")
        self.set_setting("vector_dtype", dtype)
        self._dtype = np.dtype(dtype)

    def generation(self) -> int:
        with self._read() as conn:
            return int(self._get(conn, "generation") or 0)

    # -- reads -------------------------------------------------------------------------------
    def count(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.count()).select_from(images)).scalar() or 0

    def file_states(self, roots: Sequence[str] | None = None) -> dict[str, FileState]:
        """``path -> FileState`` of the rows under ``roots`` (all rows if None)."""
        stmt = select(images.c.path, images.c.id, images.c.size, images.c.mtime_ns)
        if roots is not None:
            stmt = stmt.where(_under_any(images.c.path, roots))
        with self._read() as conn:
            return {p: FileState(i, s, m) for p, i, s, m in conn.execute(stmt)}

    def failed_files(self, roots: Sequence[str] | None = None) -> dict[str, FailedFile]:
        """Remembered failures under ``roots`` (all if None)."""
        stmt = select(failures.c.path, failures.c.size, failures.c.mtime_ns, failures.c.error)
        if roots is not None:
            stmt = stmt.where(_under_any(failures.c.path, roots))
        with self._read() as conn:
            return {p: FailedFile(p, s, m, e) for p, s, m, e in conn.execute(stmt)}

    def known_hashes(self) -> list[str]:
        """Content hashes of every row."""
        with self._read() as conn:
            return list(conn.execute(select(images.c.content_hash)).scalars())

    def hashes_of(self, ids: Iterable[int]) -> dict[str, list[int]]:
        """``content_hash -> [ids]`` for the given row ids."""
        out: dict[str, list[int]] = {}
        with self._read() as conn:
            for chunk in chunks([int(i) for i in ids]):
                for h, i in conn.execute(select(images.c.content_hash, images.c.id).where(images.c.id.in_(chunk))):
                    out.setdefault(h, []).append(i)
        return out

    def filtered_ids(self, filters: Filters) -> np.ndarray:
        """Ids of rows matching :class:`~searchlib.filters.Filters`, ascending."""
        stmt = select(images.c.id).order_by(images.c.id)
        conds = _filter_conditions(filters)
        if conds:
            stmt = stmt.where(and_(*conds))
        with self._read() as conn:
            return np.fromiter(conn.execute(stmt).scalars(), dtype=np.int64)

    def images(self, ids: Sequence[int]) -> dict[int, StoredImage]:
        """Rows by id with their tags (missing ids are absent from the result)."""
        out: dict[int, StoredImage] = {}
        with self._read() as conn:
            for chunk in chunks([int(i) for i in ids]):
                labels: dict[int, list[str]] = {}
                for i, label in conn.execute(select(tags.c.image_id, tags.c.label).where(tags.c.image_id.in_(chunk))
                                             .order_by(tags.c.label)):
                    labels.setdefault(i, []).append(label)
                for row in conn.execute(select(images).where(images.c.id.in_(chunk))):
                    out[row.id] = _stored(row, labels.get(row.id, ()))
        return out

    def iter_images(self, batch: int = 1000) -> Iterator[StoredImage]:
        """Every row ordered by path (tags included)."""
        with self._read() as conn:
            labels: dict[int, list[str]] = {}
            for i, label in conn.execute(select(tags.c.image_id, tags.c.label).order_by(tags.c.label)):
                labels.setdefault(i, []).append(label)
            result = conn.execution_options(yield_per=batch).execute(select(images).order_by(images.c.path))
            for row in result:
                yield _stored(row, labels.get(row.id, ()))

    def file_of(self, image_id: int) -> tuple[str, str] | None:
        """``(path, content_hash)`` of one row (a lighter lookup than :meth:`images`), or None."""
        with self._read() as conn:
            row = conn.execute(select(images.c.path, images.c.content_hash).where(images.c.id == int(image_id))).first()
        return (row[0], row[1]) if row else None

    def tag_counts(self) -> dict[str, int]:
        """How many images carry each tag."""
        with self._read() as conn:
            rows = conn.execute(select(tags.c.label, func.count()).group_by(tags.c.label).order_by(tags.c.label))
            return {label: int(n) for label, n in rows}

    def id_of_path(self, path: str) -> int | None:
        with self._read() as conn:
            return conn.execute(select(images.c.id).where(images.c.path == path)).scalar()

    def _decode(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=self._dtype).astype(np.float32)

    def vectors_by_hash(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of images with these content hashes (reused instead of re-embedding)."""
        out: dict[str, np.ndarray] = {}
        with self._read() as conn:
            for chunk in chunks(list(set(hashes))):
                stmt = (select(images.c.content_hash, embeddings.c.vector)
                        .join(embeddings, embeddings.c.image_id == images.c.id)
                        .where(images.c.content_hash.in_(chunk)))
                for h, blob in conn.execute(stmt):
                    out[h] = self._decode(blob)
        return out

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` stored for these ids (ascending; ids without a vector are left out)."""
        found: list[tuple[int, bytes]] = []
        with self._read() as conn:
            for chunk in chunks(sorted({int(i) for i in ids})):
                found += conn.execute(select(embeddings.c.image_id, embeddings.c.vector)
                                      .where(embeddings.c.image_id.in_(chunk))).all()
        return self._rows_to_arrays(sorted(found))

    def _rows_to_arrays(self, pairs: list) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        if not pairs:
            return ids, np.zeros((0, 0), dtype=np.float32)
        flat = np.frombuffer(b"".join(p[1] for p in pairs), dtype=self._dtype)
        return ids, flat.reshape(len(pairs), -1).astype(np.float32)

    @contextmanager
    def vector_snapshot(self) -> Iterator[VectorSnapshot]:
        """A consistent view of every stored vector: its generation, count and chunks of
        ``(ids, vectors)`` in id order, all read in one transaction."""
        with self._read() as conn:
            yield VectorSnapshot(self, conn)

    def snapshot_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(generation, ids, vectors)`` read in one transaction (all vectors in memory)."""
        with self.vector_snapshot() as snap:
            parts = list(snap.chunks())
            generation = snap.generation
        if not parts:
            return generation, np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return generation, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """About ``n`` stored vectors drawn at random (by random ids: ids that were deleted are
        skipped, so a sparse id range gives fewer; what was drawn is returned)."""
        with self._read() as conn:
            low, high = conn.execute(select(func.min(embeddings.c.image_id), func.max(embeddings.c.image_id))).one()
        if low is None:
            return np.zeros((0, 0), dtype=np.float32)
        rng = np.random.default_rng(seed)
        span = int(high) - int(low) + 1
        wanted = np.unique(rng.integers(int(low), int(high) + 1, size=min(span, int(n * 1.2) + 16)))
        ids, vectors = self.vectors_of(wanted.tolist())
        if len(ids) > n:
            vectors = vectors[rng.choice(len(ids), n, replace=False)]
        return vectors

    def changes_since(self, generation: int) -> tuple[int, np.ndarray] | None:
        """``(current generation, ids touched after generation)``, or None when the log no longer
        reaches back that far (the caller rebuilds)."""
        with self._read() as conn:
            current = int(self._get(conn, "generation") or 0)
            floor = int(self._get(conn, "changes_floor") or 0)
            if generation < floor:
                return None
            ids = conn.execute(select(changes.c.image_id).where(changes.c.generation > generation)
                               .distinct()).scalars().all()
        return current, np.asarray(sorted(ids), dtype=np.int64)

    # -- verification ------------------------------------------------------------------------
    def consistency(self, dim: int) -> Consistency:
        """Rows without a vector, vectors without a row, and vectors that are not unit-norm ``dim``."""
        width = dim * self._dtype.itemsize
        bad: list[int] = []
        with self._read() as conn:
            n_images = conn.execute(select(func.count()).select_from(images)).scalar() or 0
            n_vectors = conn.execute(select(func.count()).select_from(embeddings)).scalar() or 0
            without = conn.execute(select(images.c.id).where(
                images.c.id.not_in(select(embeddings.c.image_id))).order_by(images.c.id)).scalars().all()
            orphans = conn.execute(select(embeddings.c.image_id).where(
                embeddings.c.image_id.not_in(select(images.c.id))).order_by(embeddings.c.image_id)).scalars().all()
            result = conn.execution_options(yield_per=4096).execute(select(embeddings.c.image_id, embeddings.c.vector))
            for image_id, blob in result:
                if len(blob) != width:
                    bad.append(image_id)
                    continue
                vec = self._decode(blob)
                if not np.isfinite(vec).all() or abs(float(np.linalg.norm(vec)) - 1) > 2e-3:
                    bad.append(image_id)
        return Consistency(n_images, n_vectors, list(without), list(orphans), bad)

    def iter_file_states(self) -> Iterator[tuple[int, str, int, int]]:
        """``(id, path, size, mtime_ns)`` of every row."""
        with self._read() as conn:
            yield from conn.execution_options(yield_per=4096).execute(
                select(images.c.id, images.c.path, images.c.size, images.c.mtime_ns))

    # -- writes ------------------------------------------------------------------------------
    def apply(self, batch: ChangeSet) -> Applied:
        """Apply one batch in one transaction that bumps the generation and logs what it touched.

        A new file whose path is already in the catalog (another writer got there first) replaces
        that row instead of duplicating it.
        """
        now = utcnow()
        touched: set[int] = set()
        stored: dict[int, np.ndarray] = {}
        with self._write() as conn:
            generation = self._bump(conn)
            if batch.identity is not None:
                self._set(conn, "model", json.dumps(batch.identity.to_dict()))
            for chunk in chunks(batch.removed):
                self._delete_rows(conn, chunk)
                touched.update(chunk)
            for image_id, record, _ in batch.moved:
                # The new path may have been taken meanwhile (another writer on PostgreSQL).
                taken = conn.execute(select(images.c.id).where(and_(images.c.path == record.path,
                                                                    images.c.id != image_id))).scalar()
                if taken is not None:
                    self._delete_rows(conn, [taken])
                    touched.add(taken)
            for image_id, record, vector in batch.updated + batch.moved:
                conn.execute(update(images).where(images.c.id == image_id).values(**_row_values(record, now)))
                self._store_vectors(conn, [(image_id, vector)])
                touched.add(image_id)
                stored[image_id] = vector
            added_ids: list[int] = []
            if batch.added:
                added_ids = self._upsert_rows(conn, [r for r, _ in batch.added], now)
                self._store_vectors(conn, [(i, v) for i, (_, v) in zip(added_ids, batch.added)])
                touched.update(added_ids)
                stored.update({i: v for i, (_, v) in zip(added_ids, batch.added)})
            self._record_failures(conn, batch, now)
            if touched:
                conn.execute(changes.insert(), [{"generation": generation, "image_id": i} for i in sorted(touched)])
            if generation % 256 == 0:
                self._prune_changes(conn, generation)
        ids = np.asarray(sorted(stored), dtype=np.int64)
        vectors = np.stack([stored[i] for i in ids.tolist()]).astype(np.float32) if stored else np.zeros((0, 0),
                                                                                                          np.float32)
        if self._dtype != np.float32 and len(vectors):  # what the catalog holds, not what was given
            vectors = vectors.astype(self._dtype).astype(np.float32)
        return Applied(generation, generation - 1, np.asarray(sorted(touched), dtype=np.int64), ids, vectors,
                       added_ids)

    def _bump(self, conn: Connection) -> int:
        """Bump the generation first: on PostgreSQL the row lock orders concurrent writers."""
        as_int = func.cast(settings.c.value, BigInteger)
        res = conn.execute(update(settings).where(settings.c.key == "generation")
                           .values(value=func.cast(as_int + 1, schema.String)))
        if res.rowcount == 0:
            conn.execute(settings.insert().values(key="generation", value="1"))
        return int(self._get(conn, "generation"))

    @staticmethod
    def _delete_rows(conn: Connection, ids: list[int]) -> None:
        conn.execute(delete(tags).where(tags.c.image_id.in_(ids)))
        conn.execute(delete(embeddings).where(embeddings.c.image_id.in_(ids)))
        conn.execute(delete(images).where(images.c.id.in_(ids)))

    def _insert(self):
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert

    def _upsert_rows(self, conn: Connection, records: list[ImageRecord], now: datetime) -> list[int]:
        insert = self._insert()
        rows = [_row_values(r, now) for r in records]
        stmt = insert(images)
        stmt = stmt.on_conflict_do_update(index_elements=[images.c.path],
                                          set_={k: stmt.excluded[k] for k in rows[0] if k != "path"})
        conn.execute(stmt, rows)
        ids: dict[str, int] = {}
        for chunk in chunks([r.path for r in records]):
            ids.update(conn.execute(select(images.c.path, images.c.id).where(images.c.path.in_(chunk))).all())
        return [ids[r.path] for r in records]

    def _store_vectors(self, conn: Connection, pairs: list[tuple[int, np.ndarray]]) -> None:
        insert = self._insert()
        stmt = insert(embeddings)
        stmt = stmt.on_conflict_do_update(index_elements=[embeddings.c.image_id],
                                          set_={"vector": stmt.excluded.vector})
        conn.execute(stmt, [{"image_id": int(i), "vector": np.ascontiguousarray(v, dtype=self._dtype).tobytes()}
                            for i, v in pairs])

    def _record_failures(self, conn: Connection, batch: ChangeSet, now: datetime) -> None:
        cleared = [r.path for r, _ in batch.added] + [r.path for _, r, _ in batch.updated + batch.moved]
        cleared += batch.forget_failures + [f.path for f in batch.failed]
        for chunk in chunks(cleared):
            conn.execute(delete(failures).where(failures.c.path.in_(chunk)))
        if batch.failed:
            unique = {f.path: f for f in batch.failed}
            conn.execute(failures.insert(), [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns,
                                              "error": f.error[:2000], "failed_at": now} for f in unique.values()])

    def _prune_changes(self, conn: Connection, generation: int) -> None:
        floor = generation - CHANGES_KEPT
        if floor > 0:
            conn.execute(delete(changes).where(changes.c.generation <= floor))
            self._set(conn, "changes_floor", str(floor))

    def replace_tags(self, labels: Sequence[str], rows: Sequence[tuple[int, str, float]]) -> Applied:
        """Drop every tag with one of ``labels`` and store ``rows`` (id, label, score) instead, in one
        transaction that bumps the generation (vectors are unchanged, so no ids are logged).
        Call it through :meth:`searchlib.writer.IndexWriter.replace_tags`, under the writer lock."""
        with self._write() as conn:
            generation = self._bump(conn)
            conn.execute(delete(tags).where(tags.c.label.in_(list(labels))))
            if rows:
                conn.execute(tags.insert(), [{"image_id": i, "label": lb, "score": s} for i, lb, s in rows])
        empty = np.zeros(0, dtype=np.int64)
        return Applied(generation, generation - 1, empty, empty, np.zeros((0, 0), np.float32), [])


class VectorSnapshot:
    """Stored vectors as of one generation, read in chunks (see :meth:`Catalog.vector_snapshot`)."""

    def __init__(self, catalog: Catalog, conn: Connection):
        self._catalog, self._conn = catalog, conn
        self.generation = int(catalog._get(conn, "generation") or 0)
        self.count = conn.execute(select(func.count()).select_from(embeddings)).scalar() or 0

    def chunks(self, size: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        result = self._conn.execution_options(yield_per=size).execute(
            select(embeddings.c.image_id, embeddings.c.vector).order_by(embeddings.c.image_id))
        for part in result.partitions(size):
            yield self._catalog._rows_to_arrays(part)


_MIGRATION_LOCK_KEY = 0x5EA5C1B  # "searchlib" schema creation (pg_advisory_lock)
_WHOLE_CATALOG_KEY = 0x5EA5C1C  # a writer of the whole catalog


def _lock_key(path: bytes) -> int:
    """A signed 64-bit advisory-lock key for a folder."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(path, digest_size=8).digest(), "big", signed=True)


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _resolve_url(url: str | os.PathLike) -> tuple[str, Path | None]:
    """``(sqlalchemy url, sqlite file or None)``: a bare path or ``sqlite:///path`` is SQLite."""
    text_url = os.fspath(url)
    if re.match(r"^[a-z][a-z0-9+]*://", text_url):
        if text_url.startswith("sqlite:///"):
            path = Path(text_url[len("sqlite:///"):]).expanduser().resolve()
            return f"sqlite:///{path}", path
        if text_url.startswith("postgres://") or text_url.startswith("postgresql://"):
            text_url = "postgresql+psycopg://" + text_url.split("://", 1)[1]
        return text_url, None
    path = Path(text_url).expanduser().resolve()
    return f"sqlite:///{path}", path


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cur.execute("PRAGMA busy_timeout=30000")  # readers and one writer wait instead of failing
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _read_only_sqlite(path: Path) -> Engine:
    """An engine that never writes. ``mode=ro`` sees an indexer's commits, but a WAL database whose
    shared-memory file cannot be created (a read-only mount) only opens as ``immutable``, which is
    then true: nothing can change it there."""
    import sqlite3

    for flags in ("mode=ro", "immutable=1"):
        try:
            sqlite3.connect(f"file:{path}?{flags}", uri=True).execute("SELECT 1 FROM sqlite_master").close()
        except sqlite3.Error:
            continue
        engine = create_engine(f"sqlite:///file:{path}?{flags}&uri=true")
        event.listen(engine, "connect", _sqlite_read_pragmas)
        return engine
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")  # fails with the real reason
    event.listen(engine, "connect", _sqlite_read_pragmas)
    return engine


def _sqlite_read_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _path_bytes(path: str) -> bytes:
    return os.fsencode(path)


def _under_any(column, roots: Sequence[str]):
    """Rows whose path is one of ``roots`` or lies under one: byte ranges, so the index is used."""
    conds = []
    for root in roots:
        raw = _path_bytes(root).rstrip(b"/")
        # Everything that starts with b"root/" sorts in [b"root/", b"root0"): "0" follows "/".
        conds.append(column == literal(raw, schema.FsPath))
        conds.append(and_(column >= literal(raw + b"/", schema.FsPath), column < literal(raw + b"0", schema.FsPath)))
    return or_(*conds) if conds else literal(False)


def _filter_conditions(f: Filters) -> list:
    conds: list = []
    if f.folder:
        root = os.path.abspath(os.path.expanduser(f.folder))
        raw = _path_bytes(root).rstrip(b"/")
        conds.append(and_(images.c.path >= literal(raw + b"/", schema.FsPath),
                          images.c.path < literal(raw + b"0", schema.FsPath)))
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
    return conds


def _row_values(record: ImageRecord, now: datetime) -> dict:
    meta = record.metadata
    return {"path": record.path, "size": record.size, "mtime_ns": record.mtime_ns,
            "content_hash": record.content_hash, **{name: getattr(meta, name) for name in METADATA_FIELDS},
            "captured_at": record.captured_at, "date_source": record.date_source, "indexed_at": now}


def _stored(row, labels: Sequence[str]) -> StoredImage:
    meta = ImageMetadata(**{f.name: getattr(row, f.name) for f in fields(ImageMetadata)})
    record = ImageRecord(row.path, row.size, row.mtime_ns, row.content_hash, meta)
    return StoredImage(row.id, record, row.indexed_at, tuple(labels))


__all__ = ["Applied", "Catalog", "ChangeSet", "Consistency", "FailedFile", "FileState", "SCHEMA_HEAD",
           "VectorSnapshot", "chunks"]
