"""A catalog's connection, schema and settings: what every catalog operation stands on."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from ..errors import (
    CatalogConnectionError,
    CatalogUnavailableError,
    ConfigError,
    IndexCorruptError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexTooNewError,
    SearchlibError,
    read_only_error,
)
from ..models import ModelIdentity
from .engine import first_line, masked_url, read_only_sqlite, resolve_url, sqlite_pragmas, translate_error
from .facts import SCHEMA_HEAD, VECTOR_DTYPES
from .schema import settings

log = logging.getLogger(__name__)

_MIGRATION_LOCK_KEY = 0x5EA5C1B  # "searchlib" schema creation (pg_advisory_lock)

def read_setting(conn: Connection, key: str) -> str | None:
    """A setting's value within a connection's transaction (None if unset)."""
    return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()

def write_setting(conn: Connection, key: str, value: str) -> None:
    """Set a setting within a connection's transaction."""
    if conn.execute(update(settings).where(settings.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(settings.insert().values(key=key, value=value))

class CatalogCore:
    """The catalog of one index: rows, vectors, tags, settings, failures and the change log.

    Args:
        url: a SQLAlchemy URL (``postgresql+psycopg://...``) or a SQLite file path.
        create: create the database schema if missing (SQLite: the file too).
        read_only: open without writing (a read-only mount); writes raise
            :class:`~searchlib.errors.IndexReadOnlyError`.
    """

    def __init__(self, url: str | os.PathLike, create: bool = False, read_only: bool = False):
        self.url, self.path = resolve_url(url)
        self.read_only = read_only
        self.is_sqlite = self.path is not None
        if self.is_sqlite and not self.path.exists() and not create:
            raise IndexNotFoundError(f"no catalog at {self.path}")
        try:
            self.engine = self._engine()
        except (ArgumentError, ValueError) as e:  # an unknown scheme or driver, a port that is no number
            raise ConfigError(f"cannot use the catalog URL {masked_url(self.url)} ({first_line(e)}); write it as "
                              "postgresql://USER@HOST:PORT/DATABASE or give a SQLite file") from e
        try:
            self._connect()
            self._ensure_schema(create)
        except SearchlibError:
            self.engine.dispose()
            raise
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise IndexCorruptError(f"catalog {self.describe()} cannot be read ({first_line(e)}); restore it or "
                                    "move the index directory away and index again") from e
        self._dtype = np.dtype(self.get_setting("vector_dtype") or "float32")
        self._fts: bool | None = None  # whether the full-text table exists (looked up once)

    def describe(self) -> str:
        """The catalog's location for messages (no password)."""
        return str(self.path) if self.is_sqlite else masked_url(self.engine.url)

    def _connect(self) -> None:
        """Reach a database server once, so that a refused or failed connection (wrong password,
        nothing listening) is said as such, not as a damaged catalog."""
        if self.is_sqlite:
            return
        try:
            self.engine.connect().close()
        except (DBAPIError, CatalogUnavailableError) as e:
            # translate_error reads a refused connection as one lost mid-run; at open it is this.
            cause = e.__cause__ if isinstance(e, CatalogUnavailableError) and e.__cause__ is not None else e
            u = self.engine.url
            where = f"{u.host or 'localhost'}:{u.port or 5432}"
            reason = first_line(cause).removeprefix("connection failed: ")
            raise CatalogConnectionError(f"cannot connect to the catalog at {where}: {reason}") from e

    def _engine(self) -> Engine:
        if self.is_sqlite:
            if self.read_only:
                engine = read_only_sqlite(self.path)
            else:
                # A URL object, not text: a '?', '#' or '%' in the index's path is part of the name.
                engine = create_engine(URL.create("sqlite", database=str(self.path)))
                event.listen(engine, "connect", sqlite_pragmas)
        else:
            engine = create_engine(self.url, pool_pre_ping=True)
        event.listen(engine, "handle_error", translate_error)
        return engine

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------------
    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            if not conn.dialect.has_table(conn, "alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def _ensure_schema(self, create: bool) -> None:
        current = self.schema_revision()
        if current == SCHEMA_HEAD:
            return  # the common case costs one query, no alembic import
        if current is not None:
            from ..migrate import known_revisions

            if current not in known_revisions():
                raise IndexTooNewError(f"this index was written by a newer searchlib (schema {current}; this one "
                                       f"knows up to {SCHEMA_HEAD}); upgrade searchlib to use it")
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
            raise read_only_error(f"the index at {self.describe()}")
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if not self.is_sqlite:  # one consistent snapshot for every statement of the read
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    # -- settings ---------------------------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self._read() as conn:
            value = read_setting(conn, key)
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as conn:
            write_setting(conn, key, value)

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
            return int(read_setting(conn, "generation") or 0)
