"""The one write path of an index: :class:`IndexWriter`.

Catalog rows, stored vectors, the change log, the generation and the FAISS cache change together:
:meth:`IndexWriter.apply` writes one catalog transaction and then applies the same change to the
FAISS cache, so they never disagree. Everything that writes goes through it — the indexer's
writer thread, the sweep of removed files, ``Index.remove``, ``verify --repair``, the Ray driver,
tags — and only while the writer lock is held (:func:`writing`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from .catalog import Applied, ChangeSet
from .errors import QueryError, read_only_error
from .locks import cache_lock, remove_stale_build_folders, remove_stale_temp_files
from .query import MAX_K
from .records import ImageRecord
from .store import IndexStore
from .vectors import VectorIndex

if TYPE_CHECKING:
    from .catalog import Catalog, QuickCatalog

log = logging.getLogger(__name__)


@contextmanager
def writing(store: IndexStore, roots: Sequence[str] | None = None) -> Iterator[IndexWriter]:
    """Hold the right to write (one writer per index; on PostgreSQL, per folder) and yield the
    :class:`IndexWriter` that applies changes.

    Raises:
        IndexBusyError: another process is writing.
        IndexReadOnlyError: the index cannot be written.
    """
    if store.read_only:
        raise read_only_error(f"the index at {store.directory}")
    with store.catalog.writer_lock(store.directory, roots):
        with cache_lock(store.directory, wait=5) as locked:
            if locked:
                remove_stale_temp_files(store.directory)
        remove_stale_build_folders(store.directory)
        yield IndexWriter(store)


class IndexWriter:
    """Applies changes to an index: the catalog first, then the FAISS cache, so they never disagree.

    Get one from :meth:`searchlib.index.Index.writer`; it is valid while that context is open.

    Args:
        store: the index's catalog, vector cache and model.
    """

    def __init__(self, store: IndexStore):
        self._store = store
        self.rebuild_needed = False

    @property
    def catalog(self) -> Catalog | QuickCatalog:
        return self._store.catalog

    def apply(self, batch: ChangeSet) -> Applied:
        """Apply one batch: one catalog transaction, then the same change to the FAISS cache.

        Records with a GPS position and no place get their place here (reverse geocoding, offline),
        so every writer — the indexer, the Ray driver, a caller's own — stores places alike."""
        batch = with_places(batch)
        applied = self.catalog.apply(batch)
        if batch.identity is not None:
            self._store.forget_identity()  # read again: the first batch of a new index sets it
        if self._store.identity is not None:
            self._store.vector_cache().apply(applied)
        return applied

    def replace_tags(self, labels: Sequence[str], rows: Sequence[tuple[int, str, float]]) -> Applied:
        """Drop every tag with one of ``labels`` and store ``rows`` (id, label, score) instead, in
        one transaction that moves the generation (readers notice; vectors are unchanged)."""
        return self.catalog.replace_tags(labels, rows)

    def configure(self, max_index_memory: int | None = None, rerank: int | None = None,
                  vector_dtype: str | None = None, read_text: bool | None = None) -> None:
        """Remember index settings: the memory budget that picks the index type, the re-rank depth,
        (for an index without vectors yet) how vectors are stored (``float32``/``float16``), and
        whether indexing reads the words in images (later runs and watchers keep that choice)."""
        if read_text is not None:
            self.catalog.set_setting("read_text", "1" if read_text else "0")
        if vector_dtype is not None:
            self.catalog.set_vector_dtype(vector_dtype)
        if rerank is not None:
            if not 0 <= rerank <= MAX_K:
                raise QueryError(f"--rerank must be 0..{MAX_K}, not {rerank}")
            self.catalog.set_setting("rerank", str(rerank))
        if max_index_memory is not None and str(max_index_memory) != self.catalog.get_setting("max_index_memory"):
            self.catalog.set_setting("max_index_memory", str(max_index_memory))
            self.rebuild_needed = True

    def set_index_type(self, index_type: str) -> None:
        """Request an index type (``auto`` or a FAISS factory string); applied when the run finishes."""
        if index_type != "auto":
            ident = self._store.identity
            VectorIndex.validate_type(index_type, ident.dim if ident else 512)
        if index_type != self._store.index_type:
            self.catalog.set_setting("index_type", index_type)
            self.rebuild_needed = True

    def invalidate_vectors(self, delete_files: bool = False) -> None:
        """Drop the FAISS cache (and its file): :meth:`finish` rebuilds it from the catalog."""
        if self._store.identity is not None:
            self._store.vector_cache().invalidate(delete_files)

    def finish(self, embedder=None, for_queries: bool = True) -> None:
        """After a run: retrain or rebuild the FAISS index if the collection outgrew it, save it, and
        (``for_queries``) export the text tower if the index has no usable one, make its int8
        version and run its fidelity gate where needed (:mod:`searchlib.textquant`), and embed the
        relevance bank. Without ``for_queries`` (a watcher told to stop: seconds count) the first
        query does those two instead."""
        if self._store.identity is None:
            return
        self._store.vector_cache().finish(force_rebuild=self.rebuild_needed)
        if not for_queries:
            return
        self._store.model.ensure_text_encoder(embedder)
        # The int8 text tower's gate needs the index's vectors: they are all stored now.
        self._store.model.ensure_int8_tower(self.catalog.count,
                                            lambda n: self.catalog.sample_vectors(n, seed=0, distinct=True))
        try:  # embedded now, so that the first query does not pay for it
            self._store.model.bank_vectors()
        except Exception as e:  # queries embed it later; indexing is done and must not fail here
            log.warning("could not embed the relevance bank (%s: %s)", type(e).__name__, e)


def with_places(batch: ChangeSet) -> ChangeSet:
    """The batch with a place on every record that has a GPS position but no place yet.

    The gazetteer loads on the first record with a position (once per process). If it cannot be
    loaded, the records are stored without places and the run goes on (logged once per batch):
    a missing place must never cost an indexed photo.
    """
    records = [r for r, _ in batch.added] + [r for _, r, _ in batch.updated] + [r for _, r, _ in batch.moved]
    todo = [r for r in records if _needs_place(r)]
    if not todo:
        return batch
    try:
        from .places.gazetteer import locate

        places = locate([(r.metadata.gps_lat, r.metadata.gps_lon) for r in todo])
    except Exception as e:  # a broken or missing gazetteer: index without places
        log.warning("could not reverse geocode %d GPS positions (%s: %s); stored without places",
                    len(todo), type(e).__name__, e)
        return batch
    placed = {id(r): p for r, p in zip(todo, places) if p is not None}
    if not placed:
        return batch

    def fill(record: ImageRecord) -> ImageRecord:
        place = placed.get(id(record))
        if place is None:
            return record
        meta = replace(record.metadata, place_city=place.city, place_region=place.region,
                       place_country=place.country, place_country_code=place.country_code)
        return replace(record, metadata=meta)

    return replace(batch, added=[(fill(r), v) for r, v in batch.added],
                   updated=[(i, fill(r), v) for i, r, v in batch.updated],
                   moved=[(i, fill(r), v) for i, r, v in batch.moved])


def _needs_place(record: ImageRecord) -> bool:
    meta = record.metadata
    return meta.gps_lat is not None and meta.gps_lon is not None and not (
        meta.place_city or meta.place_region or meta.place_country or meta.place_country_code)
