"""Facts about a catalog that readers need without SQLAlchemy: the schema revision the code
expects and the vector storage types (the quick SQLite reader, :mod:`.quick`, checks both)."""

from __future__ import annotations

#: Alembic revision the code expects; tests check it equals the migrations' head.
SCHEMA_HEAD = "0007"

#: Vector storage types (``--vector-dtype``).
VECTOR_DTYPES = ("float32", "float16")
