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
records a write takes and gives back), ``schema`` (the tables), ``full`` (the :class:`Catalog`
they make up), ``facts`` (the schema head and vector types) and ``quick`` (a SQLite catalog opened
for searching with ``sqlite3`` alone).

SQLAlchemy takes about 0.35 s to import, a third of a cold ``searchlib search``: the names built on
it (:class:`Catalog`, :class:`VectorSnapshot`, :data:`CHANGES_KEPT`) load on first use (PEP 562),
and :func:`open_catalog` opens a SQLite catalog for searching without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .changes import MAX_BOUND, Applied, ChangeSet, Consistency, FailedFile, FileState, chunks
from .facts import SCHEMA_HEAD, VECTOR_DTYPES
from .quick import QuickCatalog, open_catalog

if TYPE_CHECKING:
    from .changelog import CHANGES_KEPT
    from .full import Catalog
    from .reads import VectorSnapshot


def __getattr__(name: str):
    if name == "Catalog":
        from .full import Catalog

        return Catalog
    if name == "VectorSnapshot":
        from .reads import VectorSnapshot

        return VectorSnapshot
    if name == "CHANGES_KEPT":
        from .changelog import CHANGES_KEPT

        return CHANGES_KEPT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Applied", "CHANGES_KEPT", "Catalog", "ChangeSet", "Consistency", "FailedFile", "FileState",
           "MAX_BOUND", "QuickCatalog", "SCHEMA_HEAD", "VECTOR_DTYPES", "VectorSnapshot", "chunks", "open_catalog"]
