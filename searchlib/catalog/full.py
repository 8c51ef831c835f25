"""The catalog with every query, on SQLAlchemy (SQLite or PostgreSQL)."""

from __future__ import annotations

from .locking import CatalogLocks
from .reads import CatalogReads
from .writes import CatalogWrites


class Catalog(CatalogReads, CatalogWrites, CatalogLocks):
    """The catalog of one index: rows, vectors, tags, settings, failures and the change log.

    Args:
        url: a SQLAlchemy URL (``postgresql+psycopg://...``) or a SQLite file path.
        create: create the database schema if missing (SQLite: the file too).
        read_only: open without writing (a read-only mount); writes raise
            :class:`~searchlib.errors.IndexReadOnlyError`.
    """
