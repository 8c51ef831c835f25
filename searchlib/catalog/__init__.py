"""The catalog: the one place that speaks SQL. SQLite by default, PostgreSQL by URL.

The catalog is the truth; the FAISS file is a cache rebuilt (or caught up) from the vectors stored
here. Every write is one transaction that starts by bumping ``generation``: on PostgreSQL the bump
locks that row, so concurrent writers commit one after another and generations follow commit
order; on SQLite the write lock does the same. Each generation records the image ids it touched
(``changes``), so a cache stamped with an older generation replays them instead of rebuilding.
SQLite runs in WAL mode so that readers see the last committed state while an indexer writes.

The package, by concern: ``engine`` (URLs, engines, error translation), ``core`` (connection,
schema, settings), ``locking`` (who may write), ``reads``, ``writes``, ``changelog`` (the
generation and the change log), ``conditions`` (folder ranges, filters, rows), ``changes`` (the
records a write takes and gives back) and ``schema`` (the tables).
"""

from __future__ import annotations

from .changelog import CHANGES_KEPT
from .changes import MAX_BOUND, Applied, ChangeSet, Consistency, FailedFile, FileState, chunks
from .core import SCHEMA_HEAD, VECTOR_DTYPES
from .locking import CatalogLocks
from .reads import CatalogReads, VectorSnapshot
from .writes import CatalogWrites


class Catalog(CatalogReads, CatalogWrites, CatalogLocks):
    """The catalog of one index: rows, vectors, tags, settings, failures and the change log.

    Args:
        url: a SQLAlchemy URL (``postgresql+psycopg://...``) or a SQLite file path.
        create: create the database schema if missing (SQLite: the file too).
        read_only: open without writing (a read-only mount); writes raise
            :class:`~searchlib.errors.IndexReadOnlyError`.
    """


__all__ = ["Applied", "CHANGES_KEPT", "Catalog", "ChangeSet", "Consistency", "FailedFile", "FileState",
           "MAX_BOUND", "SCHEMA_HEAD", "VECTOR_DTYPES", "VectorSnapshot", "chunks"]
