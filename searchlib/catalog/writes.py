"""Writing a catalog: one transaction per batch of changes (rows, vectors, failures, the change
log and the generation together), and tags."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection

from ..records import ImageRecord
from .changelog import ChangeLog
from .changes import Applied, ChangeSet, chunks, utcnow
from .conditions import row_values
from .core import write_setting
from .schema import changes, embeddings, failures, images, tags


class CatalogWrites(ChangeLog):
    """The writes of a catalog (call them through :class:`searchlib.writer.IndexWriter`)."""

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
                write_setting(conn, "model", json.dumps(batch.identity.to_dict()))
            for chunk in chunks(batch.removed):
                self._delete_rows(conn, chunk)
                touched.update(chunk)
            for chunk in chunks([f.path for f in batch.failed]):
                # A file indexed before that cannot be read now: its old row and vector would keep
                # answering searches for bytes that are gone. The failure is remembered instead.
                stale = conn.execute(select(images.c.id).where(images.c.path.in_(chunk))).scalars().all()
                if stale:
                    self._delete_rows(conn, list(stale))
                    touched.update(stale)
            for image_id, record, _ in batch.moved:
                # The new path may have been taken meanwhile (another writer on PostgreSQL).
                taken = conn.execute(select(images.c.id).where(and_(images.c.path == record.path,
                                                                    images.c.id != image_id))).scalar()
                if taken is not None:
                    self._delete_rows(conn, [taken])
                    touched.add(taken)
            for image_id, record, vector in batch.updated + batch.moved:
                conn.execute(update(images).where(images.c.id == image_id).values(**row_values(record, now)))
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
        rows = [row_values(r, now) for r in records]
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
