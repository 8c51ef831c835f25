"""Facts about a catalog that readers need without SQLAlchemy: the schema revision the code
expects and the vector storage types (the quick SQLite reader, :mod:`.quick`, checks both)."""

from __future__ import annotations

from collections.abc import Iterable

#: Alembic revision the code expects; tests check it equals the migrations' head.
SCHEMA_HEAD = "0007"

#: Vector storage types (``--vector-dtype``).
VECTOR_DTYPES = ("float32", "float16")

#: Row ids are 64-bit signed integers in every catalog; no row has an id outside this range.
ID_RANGE = range(-(1 << 63), 1 << 63)


def storable_ids(ids: Iterable[int]) -> list[int]:
    """The ids a row can have: one outside the 64-bit range names no image (it is left out rather
    than handed to the database, where it fails as an overflow)."""
    return [int(i) for i in ids if int(i) in ID_RANGE]
