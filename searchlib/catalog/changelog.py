"""The generation counter and the change log: every write bumps the generation and records the ids it
touched, so a FAISS cache stamped with an older generation replays them instead of rebuilding."""

from __future__ import annotations

import numpy as np
from sqlalchemy import BigInteger, delete, func, select, update
from sqlalchemy.engine import Connection

from . import schema
from .core import CatalogCore, read_setting, write_setting
from .schema import changes, settings

#: Generations whose changes are kept; a cache older than that rebuilds instead of replaying.
CHANGES_KEPT = 4096

class ChangeLog(CatalogCore):
    """The generation and the change log of a catalog."""

    def changes_since(self, generation: int) -> tuple[int, np.ndarray] | None:
        """``(current generation, ids touched after generation)``, or None when the log no longer
        reaches back that far (the caller rebuilds)."""
        with self._read() as conn:
            current = int(read_setting(conn, "generation") or 0)
            floor = int(read_setting(conn, "changes_floor") or 0)
            if generation < floor:
                return None
            ids = conn.execute(select(changes.c.image_id).where(changes.c.generation > generation)
                               .distinct()).scalars().all()
        return current, np.asarray(sorted(ids), dtype=np.int64)

    def _bump(self, conn: Connection) -> int:
        """Bump the generation first: on PostgreSQL the row lock orders concurrent writers."""
        as_int = func.cast(settings.c.value, BigInteger)
        res = conn.execute(update(settings).where(settings.c.key == "generation")
                           .values(value=func.cast(as_int + 1, schema.String)))
        if res.rowcount == 0:
            conn.execute(settings.insert().values(key="generation", value="1"))
        return int(read_setting(conn, "generation"))

    def _prune_changes(self, conn: Connection, generation: int) -> None:
        floor = generation - CHANGES_KEPT
        if floor > 0:
            conn.execute(delete(changes).where(changes.c.generation <= floor))
            write_setting(conn, "changes_floor", str(floor))
