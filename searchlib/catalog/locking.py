"""Who may write: one writer per SQLite index (a file lock), per folder on PostgreSQL (advisory
locks), and one schema migration at a time."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import CatalogUnavailableError, IndexBusyError
from .core import CatalogCore

log = logging.getLogger(__name__)

_WHOLE_CATALOG_KEY = 0x5EA5C1C  # a writer of the whole catalog

def _lock_key(path: bytes) -> int:
    """A signed 64-bit advisory-lock key for a folder."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(path, digest_size=8).digest(), "big", signed=True)

class CatalogLocks(CatalogCore):
    """The writer lock of a catalog."""

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
                try:
                    for fn, key in reversed(taken):
                        conn.execute(text(f"SELECT {fn}(:k)"), {"k": key})
                except (SQLAlchemyError, CatalogUnavailableError) as e:
                    # The session is gone and its advisory locks with it; the error that ended
                    # the run (if any) is the one to report, not this one.
                    log.info("could not release advisory locks (%s); the server released them", e)
