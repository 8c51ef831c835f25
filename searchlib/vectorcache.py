"""The FAISS cache of a catalog: a file on this machine, stamped with the generation it reflects.

The catalog is the truth. This cache is loaded from its file when the stamp matches, caught up by
replaying the catalog's change log when the stamp is older, and rebuilt from the stored vectors
when neither works (missing, corrupt, too far behind). A process that writes (the indexer, verify's
repair) hands each applied batch to :meth:`VectorCache.apply`, which updates the index in memory
when it was current; a reader (a query, the web server) calls :meth:`VectorCache.get`, which
notices when another process moved the generation on.

Searches hold a shared lock and catch-ups an exclusive one, so a server thread never searches an
index another thread is changing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .catalog import Applied, Catalog
from .config import VECTORS_FILE, VECTORS_STAMP_FILE
from .errors import ConfigError
from .indexplan import IndexPlan, plan_index
from .locks import cache_lock
from .vectors import Stamp, VectorIndex

log = logging.getLogger(__name__)

#: Replaying more changes than this share of the collection is slower than a rebuild.
CATCH_UP_MAX_SHARE = 0.25
#: A score outside this range cannot be a cosine: the cache is corrupt.
SCORE_LIMIT = 1.01


class SharedLock:
    """Many readers or one writer (searches share; catch-ups and rebuilds are exclusive)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._readers:
                self._cond.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class VectorCache:
    """The FAISS index of ``catalog``, cached in ``directory``.

    Args:
        directory: where the FAISS file and its stamp live (this machine's index directory).
        catalog: the catalog it caches.
        dim: the vector dimension (the model's).
        writable: whether this process may rewrite the file (a reader saves only after a rebuild).
    """

    def __init__(self, directory: Path, catalog: Catalog, dim: int, writable: bool = True):
        self.directory, self.catalog, self.dim = directory, catalog, dim
        self.writable = writable
        self._index: VectorIndex | None = None
        self._generation: int | None = None
        self._mapped = False  # the index maps its file read-only: copy it before changing it
        self._update = threading.Lock()  # one loader or catch-up at a time
        self._rw = SharedLock()

    @property
    def path(self) -> Path:
        return self.directory / VECTORS_FILE

    @property
    def stamp_path(self) -> Path:
        return self.directory / VECTORS_STAMP_FILE

    @property
    def generation(self) -> int | None:
        return self._generation

    def requested_type(self) -> str:
        return self.catalog.get_setting("index_type", "auto") or "auto"

    def budget(self) -> int:
        """The memory budget for the index (``--max-index-memory``; default a quarter of RAM)."""
        from .indexplan import default_budget

        value = self.catalog.get_setting("max_index_memory")
        return int(value) if value else default_budget()

    def plan(self, count: int) -> IndexPlan:
        """The index a collection of ``count`` vectors gets now (see :mod:`searchlib.indexplan`)."""
        return plan_index(count, self.dim, self.requested_type(), self.budget())

    def rerank(self) -> int:
        """Candidates re-ranked exactly from the stored vectors (approximate codes only)."""
        value = self.catalog.get_setting("rerank")
        if value is not None:
            return int(value)
        from .ondisk import DEFAULT_RERANK

        return DEFAULT_RERANK
    # -- reading -----------------------------------------------------------------------------
    def get(self) -> VectorIndex:
        """The index as of the catalog's current generation (loaded, caught up or rebuilt)."""
        current = self.catalog.generation()
        if self._index is not None and self._generation == current:
            return self._index
        with self._update:
            current = self.catalog.generation()
            if self._index is None or self._generation != current:
                self._refresh(current)
            assert self._index is not None
            return self._index

    def _refresh(self, current: int) -> None:
        if self._index is not None and self._catch_up():
            return
        stamp = Stamp.read(self.stamp_path)
        if stamp is not None and stamp.dim == self.dim and stamp.generation <= current:
            up_to_date = stamp.generation == current
            if stamp.kind == "ondisk":
                from .ondisk import OnDiskIndex

                loaded = OnDiskIndex.load(self.directory, self.path, stamp)
            else:
                loaded = VectorIndex.load(self.path, stamp, writable=not up_to_date)
            if loaded is not None:
                with self._rw.exclusive():
                    self._index, self._generation, self._mapped = loaded, stamp.generation, up_to_date
                if up_to_date or self._catch_up():
                    return
        self._rebuild()

    def _catch_up(self) -> bool:
        """Replay the catalog's changes since this index's generation; False if a rebuild is due."""
        assert self._index is not None and self._generation is not None
        found = self.catalog.changes_since(self._generation)
        if found is None:
            log.info("the change log no longer reaches generation %d: rebuilding", self._generation)
            return False
        current, touched = found
        if len(touched) > max(1000, CATCH_UP_MAX_SHARE * self._index.ntotal):
            log.info("%d changed vectors since generation %d: rebuilding", len(touched), self._generation)
            return False
        ids, vectors = self.catalog.vectors_of(touched)
        # The log may already include later commits than ``current`` was read at; the vectors read
        # just now are at least that new, and the next ``get`` replays again if needed.
        return self._replace(current, touched, ids, vectors)

    def _replace(self, generation: int, touched: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> bool:
        with self._rw.exclusive():
            index = self._index
            assert index is not None
            if self._mapped:  # a read-only map cannot change: take a copy in memory first
                index = index.copy()
            try:
                index.remove(touched)
            except ConfigError:  # index types that cannot remove (HNSW) are rebuilt
                return False
            index.add(ids, vectors)
            self._index, self._generation, self._mapped = index, generation, False
        return True

    def _rebuild(self) -> None:
        with self.catalog.vector_snapshot() as snap:
            generation, count = snap.generation, snap.count
            plan = self.plan(count)
            log.info("building %s vector index from %d stored vectors (%s)", plan.factory, count, plan.reason)
            if plan.on_disk:
                from .ondisk import OnDiskIndex

                built = OnDiskIndex.build(self.directory, self.dim, plan.factory, snap, self.catalog.sample_vectors,
                                          self.catalog.vectors_of, plan.budget_bytes, rerank=self.rerank())
            else:
                parts = list(snap.chunks())
        if not plan.on_disk:
            ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
            vectors = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, self.dim), np.float32)
            built = VectorIndex.build(self.dim, ids, vectors, plan.factory, fallback=True)
        with self._rw.exclusive():
            self._index, self._generation, self._mapped = built, generation, False
        # An on-disk build has already replaced the files the stamp describes, at the same generation
        # and count as the stamp may say: the stamp must be rewritten whatever it says.
        self.save(force=True)

    # -- writing -----------------------------------------------------------------------------
    def apply(self, applied: Applied) -> None:
        """Bring the in-memory index up to ``applied.generation`` after a catalog write."""
        with self._update:
            if self._index is not None and self._generation == applied.previous:
                if self._replace(applied.generation, applied.touched, applied.ids, applied.vectors):
                    return
                self._rebuild()
                return
        self.get()  # another writer committed in between (or nothing loaded): replay the log

    def finish(self, force_rebuild: bool = False) -> None:
        """After a writing run: retrain or rebuild if the collection outgrew its index, then save."""
        index = self.get()
        if force_rebuild or index.needs_rebuild(index.ntotal, self.requested_type(), self.budget()):
            with self._update:
                self._rebuild()
        else:
            self.save()

    def invalidate(self, delete_files: bool = False) -> None:
        """Forget the in-memory index (and with ``delete_files`` the cached file): the next use rebuilds."""
        with self._update, self._rw.exclusive():
            self._index = self._generation = None
            if delete_files:
                for path in (self.path, self.stamp_path):
                    path.unlink(missing_ok=True)

    def save(self, force: bool = False) -> None:
        """Persist the current index with its stamp, if this process may and can (unless ``force``,
        not when the stamp on disk already describes this state)."""
        if self._index is None or self._generation is None or not self.writable:
            return
        stamp = Stamp.read(self.stamp_path)
        if not force and stamp is not None and stamp.generation == self._generation \
                and stamp.count == self._index.ntotal and stamp.index_type == self._index.index_type \
                and self.path.exists():
            return  # the file already holds this state
        with cache_lock(self.directory) as locked:
            if not locked:
                log.info("vector cache %s is locked or read-only: not saved", self.path)
                return
            try:
                with self._rw.shared():
                    self._index.save(self.path, self.stamp_path, self._generation)
            except OSError as e:  # a read-only or full disk: searching still works from memory
                log.warning("cannot save the vector index: %s", e)

    # -- searching ---------------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[VectorIndex]:
        """The current index, held so no catch-up changes it while the caller searches."""
        index = self.get()
        with self._rw.shared():
            yield self._index if self._index is not None else index

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
               rerank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)`` for each query row (among ``allowed`` ids if given).

        An index of approximate codes (PQ) fetches ``max(k, rerank)`` candidates and re-ranks them by
        their exact cosine with the stored vectors, so scores are exact and recall goes up without
        growing the index in memory. Scores that cannot be cosines mean the cache file was damaged
        in a way its stamp did not catch: it is rebuilt from the catalog and the search runs again.
        """
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1, self.dim)
        for _attempt in range(2):
            with self.reading() as index:
                depth = 0 if index.exact else (self.rerank() if rerank is None else rerank)
                wanted = max(k, depth)
                if allowed is None:
                    scores, ids = index.search(query, wanted)
                else:
                    scores, ids = index.search_subset(query, wanted, allowed)
            if depth:
                scores, ids = self._rerank(query, ids, k)
            valid = ids >= 0
            if not valid.any() or np.all(np.abs(scores[valid]) <= SCORE_LIMIT):
                return scores, ids
            log.warning("the vector cache %s returned impossible scores (up to %.3g): it is corrupt; rebuilding "
                        "it from the catalog", self.path, float(np.nanmax(np.abs(scores[valid]))))
            with self._update:
                self._rebuild()
        return scores, ids

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for the candidates from their stored vectors; the best ``k`` per query."""
        ids, vectors = self.catalog.vectors_of(np.unique(candidates[candidates >= 0]).tolist())
        position = {int(i): n for n, i in enumerate(ids.tolist())}
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, cands) in enumerate(zip(queries, candidates)):
            kept = [int(i) for i in cands if int(i) in position]  # deleted since: dropped
            if not kept:
                continue
            exact = vectors[[position[i] for i in kept]] @ query
            order = np.argsort(-exact, kind="stable")[:k]
            out_scores[row, :len(order)] = exact[order]
            out_ids[row, :len(order)] = np.asarray(kept)[order]
        return out_scores, out_ids
