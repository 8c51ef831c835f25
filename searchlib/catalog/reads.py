"""Reading a catalog: rows, file facts, filters, vectors (by id, by content hash, as a snapshot,
as a sample), and verify's consistency check."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from sqlalchemy import and_, func, select, text
from sqlalchemy.engine import Connection

from ..filters import Filters
from ..ocr import fold
from ..places.distance import haversine_km
from ..places.names import PlaceNames
from ..records import StoredImage
from .changes import Consistency, FailedFile, FileState, chunks
from .conditions import filter_conditions, stored_image, text_conditions, under_any
from .core import CatalogCore, read_setting
from .schema import embeddings, failures, images, tags

#: Row ids are 64-bit signed integers in every catalog; no row has an id outside this range.
_ID_RANGE = range(-(1 << 63), 1 << 63)


def storable_ids(ids: Iterable[int]) -> list[int]:
    """The ids a row can have: one outside the 64-bit range names no image (it is left out rather
    than handed to the database, where it fails as an overflow)."""
    return [int(i) for i in ids if int(i) in _ID_RANGE]


class CatalogReads(CatalogCore):
    """The read queries of a catalog."""

    def count(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.count()).select_from(images)).scalar() or 0

    def file_states(self, roots: Sequence[str] | None = None) -> dict[str, FileState]:
        """``path -> FileState`` of the rows under ``roots`` (all rows if None)."""
        stmt = select(images.c.path, images.c.id, images.c.size, images.c.mtime_ns)
        if roots is not None:
            stmt = stmt.where(under_any(images.c.path, roots))
        with self._read() as conn:
            return {p: FileState(i, s, m) for p, i, s, m in conn.execute(stmt)}

    def failed_files(self, roots: Sequence[str] | None = None) -> dict[str, FailedFile]:
        """Remembered failures under ``roots`` (all if None)."""
        stmt = select(failures.c.path, failures.c.size, failures.c.mtime_ns, failures.c.error)
        if roots is not None:
            stmt = stmt.where(under_any(failures.c.path, roots))
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

    def filtered_ids(self, filters: Filters, known_places: PlaceNames | None = None) -> np.ndarray:
        """Ids of rows matching :class:`~searchlib.filters.Filters`, ascending.

        ``known_places``: the catalog's :meth:`place_names`, when the caller keeps them (read here
        otherwise, for a filter on places)."""
        known = known_places if known_places is not None or not filters.places else self.place_names()
        columns = [images.c.id] + ([images.c.gps_lat, images.c.gps_lon] if filters.near is not None else [])
        stmt = select(*columns).order_by(images.c.id)
        conds = filter_conditions(filters, known, self.has_text_index())
        if conds:
            stmt = stmt.where(and_(*conds))
        with self._read() as conn:
            if filters.near is None:
                return np.fromiter(conn.execute(stmt).scalars(), dtype=np.int64)
            rows = conn.execute(stmt).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        lats, lons = (np.array([r[i] for r in rows], dtype=np.float64) for i in (1, 2))
        return ids[haversine_km(filters.near[0], filters.near[1], lats, lons) <= filters.radius_km]

    def place_names(self) -> PlaceNames:
        """The places the catalog's images were taken in (distinct city, region, country, code)."""
        stmt = select(images.c.place_city, images.c.place_region, images.c.place_country,
                      images.c.place_country_code).distinct()
        with self._read() as conn:
            return PlaceNames(conn.execute(stmt).fetchall())

    def images(self, ids: Sequence[int]) -> dict[int, StoredImage]:
        """Rows by id with their tags (missing ids are absent from the result)."""
        out: dict[int, StoredImage] = {}
        with self._read() as conn:
            for chunk in chunks(storable_ids(ids)):
                labels: dict[int, list[str]] = {}
                for i, label in conn.execute(select(tags.c.image_id, tags.c.label).where(tags.c.image_id.in_(chunk))
                                             .order_by(tags.c.label)):
                    labels.setdefault(i, []).append(label)
                for row in conn.execute(select(images).where(images.c.id.in_(chunk))):
                    out[row.id] = stored_image(row, labels.get(row.id, ()))
        return out

    def iter_images(self, batch: int = 1000) -> Iterator[StoredImage]:
        """Every row ordered by path (tags included)."""
        with self._read() as conn:
            labels: dict[int, list[str]] = {}
            for i, label in conn.execute(select(tags.c.image_id, tags.c.label).order_by(tags.c.label)):
                labels.setdefault(i, []).append(label)
            result = conn.execution_options(yield_per=batch).execute(select(images).order_by(images.c.path))
            for row in result:
                yield stored_image(row, labels.get(row.id, ()))

    def file_of(self, image_id: int) -> tuple[str, str] | None:
        """``(path, content_hash)`` of one row (a lighter lookup than :meth:`images`), or None."""
        if not storable_ids([image_id]):
            return None
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

    def texts_by_hash(self, hashes: Iterable[str]) -> dict[str, str]:
        """Text read in images with these content hashes (a copy or a move keeps what was read)."""
        out: dict[str, str] = {}
        with self._read() as conn:
            for chunk in chunks(list(set(hashes))):
                stmt = select(images.c.content_hash, images.c.text).where(
                    images.c.content_hash.in_(chunk), images.c.text.is_not(None))
                out.update({h: t for h, t in conn.execute(stmt)})
        return out

    def unread_text(self, roots: Sequence[str]) -> list[tuple[int, str]]:
        """``(id, path)`` of images under ``roots`` whose words were never read (text is NULL)."""
        with self._read() as conn:
            stmt = select(images.c.id, images.c.path).where(images.c.text.is_(None), under_any(images.c.path, roots))
            return [(i, p) for i, p in conn.execute(stmt.order_by(images.c.id))]

    def has_text(self) -> bool:
        """Whether any image has text read in it (one indexed lookup)."""
        with self._read() as conn:
            return conn.execute(select(images.c.id).where(images.c.text_folded.is_not(None)).limit(1)).first() \
                is not None

    def has_text_index(self) -> bool:
        """Whether SQLite's FTS5 table for read text exists (PostgreSQL uses a trigram index)."""
        if not self.is_sqlite:
            return False
        if self._fts is None:
            with self._read() as conn:
                self._fts = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'images_text'")).first() \
                    is not None
        return self._fts

    def text_matches(self, words: Sequence[str], limit: int = 100,
                     allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Images whose read text contains any of ``words`` (folded): ``(id, share of the words
        found)``, best first, at most ``limit``. Used to fuse word matches into a text query."""
        words = [w for w in (fold(w) for w in words) if w]
        if not words:
            return []
        found: dict[int, float] = {}
        with self._read() as conn:
            for word in dict.fromkeys(words):
                stmt = select(images.c.id).where(*text_conditions([word], self.has_text_index())).limit(10 * limit)
                for (image_id,) in conn.execute(stmt):
                    found[image_id] = found.get(image_id, 0.0) + 1.0 / len(set(words))
        if allowed is not None:
            keep = set(allowed.tolist())
            found = {i: s for i, s in found.items() if i in keep}
        return sorted(found.items(), key=lambda p: (-p[1], p[0]))[:limit]

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` stored for these ids (ascending; ids without a vector are left out)."""
        found: list[tuple[int, bytes]] = []
        with self._read() as conn:
            for chunk in chunks(sorted(set(storable_ids(ids)))):
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

    def sample_vectors(self, n: int, seed: int = 0, distinct: bool = True) -> np.ndarray:
        """About ``n`` stored vectors drawn at random (by random ids: ids that were deleted are
        skipped, so a sparse id range gives fewer; what was drawn is returned).

        ``distinct=False`` draws ``n * 1.2`` ids with replacement and keeps each once: on a
        collection smaller than that, about 63 % of it. Relevance's background sample is drawn so,
        because its calibration (benchmarks/RESULTS.md) was measured with it; training PQ needs
        every point it asks for, and gets distinct ids."""
        with self._read() as conn:
            low, high, stored = conn.execute(select(func.min(embeddings.c.image_id), func.max(embeddings.c.image_id),
                                                    func.count())).one()
        if low is None:
            return np.zeros((0, 0), dtype=np.float32)
        rng = np.random.default_rng(seed)
        span = int(high) - int(low) + 1
        if not distinct:
            wanted = np.unique(rng.integers(int(low), int(high) + 1, size=min(span, int(n * 1.2) + 16)))
            ids, vectors = self.vectors_of(wanted.tolist())
            if len(ids) > n:
                vectors = vectors[rng.choice(len(ids), n, replace=False)]
            return vectors
        # Distinct ids (drawing with replacement gave ~70% of n when n is near the count: PQ then
        # trained on fewer points than it needs), enough of them for the holes deleted rows left.
        draws = min(span, int(n * 1.2 * span / max(1, int(stored))) + 16)
        wanted = np.sort(int(low) + rng.choice(span, size=draws, replace=False))
        ids, vectors = self.vectors_of(wanted.tolist())
        if len(ids) > n:
            vectors = vectors[rng.choice(len(ids), n, replace=False)]
        return vectors

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

class VectorSnapshot:
    """Stored vectors as of one generation, read in chunks (see :meth:`Catalog.vector_snapshot`)."""

    def __init__(self, catalog: CatalogReads, conn: Connection):
        self._catalog, self._conn = catalog, conn
        self.generation = int(read_setting(conn, "generation") or 0)
        self.count = conn.execute(select(func.count()).select_from(embeddings)).scalar() or 0

    def chunks(self, size: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        result = self._conn.execution_options(yield_per=size).execute(
            select(embeddings.c.image_id, embeddings.c.vector).order_by(embeddings.c.image_id))
        for part in result.partitions(size):
            yield self._catalog._rows_to_arrays(part)
