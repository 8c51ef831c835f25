"""An index: the public face over the catalog, the FAISS cache, the model and the writer lock.

:class:`Index` composes small collaborators and keeps the write invariant in one place:
:class:`IndexWriter` applies every batch to the catalog and then to the FAISS cache, so rows,
vectors and the generation always move together. The indexer, ``verify --repair`` and
:meth:`Index.remove` all write through it.

An ``Index`` is safe to share between threads for searching (a web server does); writes are one
writer at a time (:meth:`Index.writer`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Applied, Catalog, ChangeSet
from .config import CATALOG_FILE, VECTORS_FILE
from .encoders import IndexModel
from .errors import ImageNotFoundError, IndexNotFoundError, QueryError, SearchlibError
from .filters import Filters
from .locks import cache_lock, remove_stale_temp_files
from .models import ModelIdentity
from .query import Hit, QueryTerm, check_cut, combine, parse_query, parse_term, relevance_cut, renumber, sort_by_date
from .records import StoredImage
from .relevance import BACKGROUND_SAMPLE, RelevanceScorer, is_relevant
from .vectorcache import VectorCache
from .vectors import VectorIndex

log = logging.getLogger(__name__)

#: The most hits one search returns (``k + offset``).
MAX_K = 10_000


class Index:
    """One searchlib index: a catalog (SQLite in ``directory``, or a database URL) and this
    machine's caches in ``directory``.

    Use :func:`open_index` to open an existing index; :func:`searchlib.index_folder` creates them.
    Methods that embed load the index's own model on first use and keep it warm.
    """

    def __init__(self, directory: Path, catalog: Catalog, device: str = "auto"):
        self.directory = directory
        self.catalog = catalog
        self.device = device
        self.read_only = catalog.read_only or not os.access(directory, os.W_OK)
        self._identity = catalog.model_identity()
        self._cache: VectorCache | None = None
        self._model = IndexModel(directory, self._identity, device, writable=not self.read_only)
        self._state = threading.Lock()
        self._text_batcher = None
        self._search_batcher = None
        self._scorer: tuple[int | None, RelevanceScorer] | None = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike, device: str = "auto", catalog: str | None = None) -> Index:
        """Open an existing index.

        Args:
            directory: the index directory (with ``catalog``: this machine's cache directory).
            device: where the model runs when one is needed.
            catalog: a database URL (``postgresql+psycopg://...``); default: the SQLite file in
                ``directory``.

        Raises:
            IndexNotFoundError: no index there.
            IndexCorruptError: the catalog cannot be read.
        """
        directory = Path(directory).expanduser().resolve()
        if catalog is None:
            path = directory / CATALOG_FILE
            if not path.is_file():
                raise IndexNotFoundError(
                    f"no index at {directory}; create one with 'searchlib index PATH' (or pass --index DIR)")
            writable = os.access(directory, os.W_OK) and os.access(path, os.W_OK)
            return cls(directory, Catalog(path, read_only=not writable), device)
        _make_dir(directory)
        return cls(directory, Catalog(catalog), device)

    @classmethod
    def open_or_create(cls, directory: str | os.PathLike, device: str = "auto", catalog: str | None = None) -> Index:
        """Open the index at ``directory``, creating the directory and an empty catalog if needed."""
        directory = Path(directory).expanduser().resolve()
        _make_dir(directory)
        local = directory / CATALOG_FILE
        if not os.access(directory, os.W_OK) or (catalog is None and local.exists() and not os.access(local, os.W_OK)):
            from .errors import IndexReadOnlyError

            raise IndexReadOnlyError(f"the index at {directory} is read-only: searching works, writing does not; "
                                     "index into a writable copy")
        return cls(directory, Catalog(catalog or local, create=True), device)

    def close(self) -> None:
        for batcher in (self._text_batcher, self._search_batcher):
            if batcher is not None:
                batcher.close()
        self._text_batcher = self._search_batcher = None
        self.catalog.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def identity(self) -> ModelIdentity | None:
        """The model this index's vectors come from (None for an empty, new index)."""
        if self._identity is None:
            self._identity = self.catalog.model_identity()
            self._model.identity = self._identity
        return self._identity

    # -- the FAISS cache ---------------------------------------------------------------------
    def _vector_cache(self) -> VectorCache:
        ident = self.identity
        if ident is None:
            raise IndexNotFoundError(f"the index at {self.directory} is empty; index some images first")
        with self._state:
            if self._cache is None:
                self._cache = VectorCache(self.directory, self.catalog, ident.dim, writable=not self.read_only)
            return self._cache

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index as of the catalog's current generation (read-only use)."""
        return self._vector_cache().get()

    @property
    def index_type(self) -> str:
        """The requested FAISS index type: ``auto`` (by collection size) or a factory string."""
        return self.catalog.get_setting("index_type", "auto") or "auto"

    # -- writing -----------------------------------------------------------------------------
    @contextmanager
    def writer(self, roots: Sequence[str] | None = None) -> Iterator[IndexWriter]:
        """Hold the right to write (one writer per index; on PostgreSQL, per folder) and get the
        :class:`IndexWriter` that applies changes.

        Raises:
            IndexBusyError: another process is writing.
            IndexReadOnlyError: the index cannot be written.
        """
        if self.read_only:
            from .errors import IndexReadOnlyError

            raise IndexReadOnlyError(f"the index at {self.directory} is read-only: searching works, writing does "
                                     "not; index into a writable copy")
        with self.catalog.writer_lock(self.directory, roots):
            with cache_lock(self.directory, wait=5) as locked:
                if locked:
                    remove_stale_temp_files(self.directory)
            yield IndexWriter(self)

    def remove(self, paths: Sequence[str | os.PathLike]) -> int:
        """Remove these files' rows and vectors from the index (the files stay on disk).

        Returns how many were indexed. Paths are matched as absolute paths.
        """
        wanted = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
        states = self.catalog.file_states(wanted)
        ids = [states[p].id for p in wanted if p in states]
        if ids:
            with self.writer() as writer:
                writer.apply(ChangeSet(removed=sorted(set(ids))))
                writer.finish()
        return len(set(ids))

    # -- embedding ---------------------------------------------------------------------------
    def embedder(self):
        """The index's own full model (loaded once, kept warm)."""
        return self._model.embedder()

    def text_encoder(self):
        """The exported ONNX text tower (no torch needed), or None when texts use the full model."""
        return self._model.text_encoder()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized text vectors in this index's space, ``(len(texts), dim)`` float32."""
        if self._text_batcher is not None:
            return np.stack(self._text_batcher.submit(list(texts))) if texts else self._model.embed_texts([])
        return self._model.embed_texts(texts)

    def batch_queries(self, max_batch: int = 32) -> None:
        """Serve concurrent threads in batches: their texts share one encoder call and their
        unfiltered searches one scan of the vectors (a server under load answers more queries per
        second; a lone query is not delayed). See :mod:`searchlib.batching`."""
        from .batching import Batcher

        with self._state:
            if self._text_batcher is None:
                self._text_batcher = Batcher(lambda texts: list(self._model.embed_texts(texts)), max_batch,
                                             "searchlib-text-batcher")
                self._search_batcher = Batcher(self._search_many, max_batch, "searchlib-search-batcher")

    def _search_many(self, requests: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Unfiltered searches of several queries in one call: ``[(vector, k)] -> [(scores, ids)]``."""
        cache = self._vector_cache()
        k = max(r[1] for r in requests)
        scores, ids = cache.search(np.stack([r[0] for r in requests]), k)
        return [(scores[i, :kk], ids[i, :kk]) for i, (_, kk) in enumerate(requests)]

    def embed_images(self, images: Sequence[str | os.PathLike | bytes | Any]) -> np.ndarray:
        """Normalized image vectors (file paths, encoded bytes or ``PIL.Image``) in this index's space."""
        return self._model.embed_images(images)

    def vector_of(self, image_id: int) -> np.ndarray:
        """The stored vector of an indexed image.

        Raises:
            QueryError: no image has this id.
        """
        ids, vectors = self.catalog.vectors_of([int(image_id)])
        if not len(ids):
            raise ImageNotFoundError(f"no indexed image has id {image_id}")
        return vectors[0]

    def image_vector(self, image: str | os.PathLike | bytes | Any) -> np.ndarray:
        """The vector of an image: the stored one if its bytes are indexed, else embedded now."""
        import hashlib

        from PIL import Image

        if not isinstance(image, Image.Image):
            from .embedding import read_image_file

            data = bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else read_image_file(image)
            stored = self.catalog.vectors_by_hash([hashlib.sha256(data).hexdigest()])
            if stored:
                return next(iter(stored.values()))
            image = data
        return self.embed_images([image])[0]

    def _terms(self, query: Any, add: Sequence, subtract: Sequence) -> list[QueryTerm]:
        if isinstance(query, str):
            terms = parse_query(query) if query.strip() else []
        elif isinstance(query, np.ndarray):
            terms = [QueryTerm(query, 1.0, "vector")]
        elif isinstance(query, (bytes, bytearray, memoryview, os.PathLike)) or _is_pil(query):
            terms = [QueryTerm(query, 1.0, "image")]
        elif query is None:
            terms = []
        else:
            terms = list(query)
        terms += [_as_term(t, 1.0) for t in add] + [_as_term(t, -1.0) for t in subtract]
        if not terms:
            raise QueryError("the query is empty; say what to look for, e.g. 'a dog on a beach'")
        return terms

    def query_warnings(self, query: Any = "", add: Sequence = ()) -> list[str]:
        """Warnings about a query, without running it: text in a script the index's model was not
        trained to read (e.g. Chinese or Cyrillic for an English-only model)."""
        from .languages import query_warning

        ident = self.identity
        texts = [query] if isinstance(query, str) else []
        texts += [t for t in add if isinstance(t, str)]
        if ident is None or not texts:
            return []
        warning = query_warning(" ".join(texts), ident.arch, ident.name)
        return [warning] if warning else []

    def query_vector(self, query: Any = "", add: Sequence = (), subtract: Sequence = ()) -> np.ndarray:
        """One normalized vector for a combined query.

        Args:
            query: text such as ``"beach + sunset - people"`` (only `` + ``/`` - `` with spaces split;
                ``2:sunset`` weighs a term; a term that is clearly a path to a file, ``./x.jpg`` or
                ``~/x.jpg``, is an image), an image (``PIL.Image``, bytes, ``pathlib.Path``), a
                vector, or a list of :class:`~searchlib.query.QueryTerm`.
            add, subtract: more terms (texts, image paths, bytes or ``PIL.Image``; texts may be
                ``weight:``-prefixed).
        """
        return self._vector_of(self._terms(query, add, subtract))

    def _vector_of(self, terms: list[QueryTerm]) -> np.ndarray:
        texts = [t.value for t in terms if t.kind == "text"]
        text_vecs = iter(self.embed_texts(texts)) if texts else iter(())
        vecs = []
        for t in terms:
            if t.kind == "text":
                vecs.append(next(text_vecs))
            elif t.kind == "vector":
                vecs.append(_checked_vector(t.value, self.identity))
            else:
                vecs.append(self.image_vector(t.value))
        if len(terms) == 1 and terms[0].weight > 0:
            from .vectormath import normalize

            return normalize(vecs[0])[0]
        return combine(np.stack(vecs), [t.weight for t in terms])

    # -- searching ---------------------------------------------------------------------------
    def search(self, query: Any = "", k: int = 10, *, offset: int = 0, add: Sequence = (),
               subtract: Sequence = (), filters: Filters | None = None, min_score: float | None = None,
               relative: float | None = None, relevant: bool = False, sort: str = "score",
               rerank: int | None = None) -> list[Hit]:
        """The images that best match ``query``, best first.

        Hits of text queries carry a calibrated ``relevance`` (0..1, the same scale for every
        query; see :mod:`searchlib.relevance`) besides the raw cosine ``score``.

        Args:
            query: text (``"beach + 2:sunset - people"``), an image (``PIL.Image``, bytes,
                ``pathlib.Path``), a vector (e.g. :meth:`vector_of` for "more like this"), or
                terms; see :meth:`query_vector`.
            k: at most this many hits; with filters, ``k`` matching hits whenever ``k`` exist.
            offset: skip this many of the best (paging: ranks continue from ``offset + 1``).
            add, subtract: more terms to steer towards or away from.
            filters: metadata conditions (:class:`~searchlib.filters.Filters`), applied inside
                the vector search.
            min_score: drop hits below this cosine similarity.
            relative: drop hits scoring below ``best - relative * |best|`` (best of the whole
                result, not of the page).
            relevant: keep only hits judged relevant (``relevance >= 0.5``); a query that matches
                nothing then returns nothing. Text queries only.
            sort: ``score`` (best first) or ``date`` (the kept hits, oldest first).
            rerank: on an index of compressed codes, re-rank this many candidates exactly from the
                stored vectors (default: the index's setting, 100; 0 turns it off).

        Raises:
            QueryError: an empty query, a bad term or parameter.
            IndexNotFoundError: the index is empty.
        """
        if sort not in ("score", "date"):
            raise QueryError(f"unknown sort {sort!r}; use score or date")
        if not 1 <= k <= MAX_K or not 0 <= offset <= MAX_K - k:
            raise QueryError(f"k must be 1..{MAX_K} and offset 0..{MAX_K} - k (got k={k}, offset={offset})")
        check_cut(min_score, relative)
        if rerank is not None and not 0 <= rerank <= MAX_K:
            raise QueryError(f"rerank must be 0..{MAX_K}, not {rerank}")
        terms = self._terms(query, add, subtract)
        textual = all(t.kind == "text" for t in terms)
        if relevant and not textual:
            raise QueryError("relevance is judged for text queries only; drop --relevant for image "
                             "queries, or use --min-score")
        cache = self._vector_cache()
        # Load (or map) the FAISS index while the query is embedded: a cold query pays for one.
        errors: list[BaseException] = []
        loader = threading.Thread(target=_call, args=(cache.get, errors), name="searchlib-load-vectors")
        loader.start()
        try:
            vector = self._vector_of(terms)
        finally:
            loader.join()
        if errors:  # reported here, in the caller's thread, never through threading.excepthook
            raise errors[0]
        hits = self._search_vector(cache, vector, offset + k, filters, rerank)
        if textual:
            hits = self._with_relevance(vector, hits)
        if relevant:
            hits = [h for h in hits if is_relevant(h.relevance)]
        hits = relevance_cut(hits, min_score, relative)
        if sort == "date":
            hits = sort_by_date(hits)
        return renumber(hits[offset:], offset + 1)

    def _search_vector(self, cache: VectorCache, vector: np.ndarray, k: int, filters: Filters | None,
                       rerank: int | None = None) -> list[Hit]:
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = self.catalog.filtered_ids(filters)
            if len(allowed) == 0:
                return []
        if allowed is None and rerank is None and self._search_batcher is not None:
            ((row_scores, row_ids),) = self._search_batcher.submit([(vector.reshape(-1), k)])
            scores, ids = row_scores[None], row_ids[None]
        else:
            scores, ids = cache.search(vector.reshape(1, -1), k, allowed, rerank)
        return self._hits([(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0])

    def relevance_scorer(self) -> RelevanceScorer:
        """What judges relevance here: a background sample of this index's vectors (drawn again
        when the collection changes) and the caption bank in the index's model."""
        generation = self._vector_cache().generation
        with self._state:
            scorer = self._scorer
        if scorer is None or scorer[0] != generation:
            background = self.catalog.sample_vectors(BACKGROUND_SAMPLE, seed=0)
            scorer = (generation, RelevanceScorer(background, self._model.bank_vectors()))
            with self._state:
                self._scorer = scorer
        return scorer[1]

    def _with_relevance(self, vector: np.ndarray, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scorer = self.relevance_scorer()
        ids, vectors = self.catalog.vectors_of([h.id for h in hits])
        by_id = dict(zip(ids.tolist(), range(len(ids))))
        kept = [h for h in hits if h.id in by_id]  # a row deleted since the search: drop it, as _hits does
        if not kept:
            return kept
        rows = vectors[[by_id[h.id] for h in kept]]
        figures = scorer.relevance(vector, np.array([h.score for h in kept], dtype=np.float32), rows)
        return [replace(h, relevance=round(float(r), 4)) for h, r in zip(kept, figures)]

    def _hits(self, pairs: list[tuple[int, float]]) -> list[Hit]:
        """The one place hits are made: catalog rows for ``(id, score)`` pairs, in order."""
        rows = self.catalog.images([i for i, _ in pairs])
        hits: list[Hit] = []
        for image_id, score in pairs:
            row = rows.get(image_id)
            if row is None:  # deleted after the FAISS snapshot was taken; skip rather than fail
                continue
            hits.append(Hit(len(hits) + 1, image_id, row.path, score, row.to_dict()))
        return hits

    # -- listing -----------------------------------------------------------------------------
    def image(self, image_id: int) -> StoredImage:
        """One indexed image by id.

        Raises:
            QueryError: no image has this id.
        """
        found = self.catalog.images([int(image_id)])
        if int(image_id) not in found:
            raise ImageNotFoundError(f"no indexed image has id {image_id}")
        return found[int(image_id)]

    def thumbnail(self, image_id: int, size: int = 256):
        """A JPEG thumbnail of an indexed image fitted into ``size`` pixels (EXIF orientation applied),
        cached in the index directory: :class:`searchlib.thumbnails.Thumbnail` (``path``, ``etag``).

        Raises:
            QueryError: no image has this id.
            ImageDecodeError: the file is gone or no longer an image.
        """
        from .thumbnails import thumbnail

        found = self.catalog.file_of(image_id)
        if found is None:
            raise ImageNotFoundError(f"no indexed image has id {image_id}")
        return thumbnail(self.directory, found[0], found[1], size)

    def generation(self) -> int:
        """The catalog's generation: it moves whenever an indexer commits (a cheap way to notice)."""
        return self.catalog.generation()

    def images(self) -> Iterator[dict]:
        """Every indexed image as ``{"id", "path", **metadata}``, ordered by path."""
        for row in self.catalog.iter_images():
            yield {"id": row.id, "path": row.path, **row.to_dict()}

    def info(self) -> dict:
        """Counts, model, index type and its recall, sizes on disk.

        While an indexer commits, ``vectors`` (read first) may lag ``images`` but never exceeds it.
        """
        ident = self.identity
        vectors = self.vectors if ident is not None else None
        names = [CATALOG_FILE, CATALOG_FILE + "-wal", VECTORS_FILE, "text_encoder.onnx"]
        sizes = {name: (self.directory / name).stat().st_size for name in names if (self.directory / name).exists()}
        out: dict = {"index": str(self.directory), "catalog": self.catalog.describe(), "images": self.catalog.count(),
                     "model": ident.to_dict() if ident else None, "index_type_requested": self.index_type,
                     "vector_dtype": self.catalog.vector_dtype, "schema": self.catalog.schema_revision(),
                     "read_only": self.read_only, "bytes_on_disk": sizes}
        if vectors is None:
            return {**out, "vectors": 0, "index_type": None, "exact": True, "recall_at_10": None, "nprobe": None,
                    "dim": None, "memory": None}
        cache = self._vector_cache()
        plan = cache.plan(vectors.ntotal)
        on_disk = not vectors.exact and hasattr(vectors, "delta")
        return {**out, "vectors": vectors.ntotal, "index_type": vectors.index_type, "exact": vectors.exact,
                "recall_at_10": vectors.recall_at_10, "nprobe": vectors.nprobe or None, "dim": vectors.dim,
                "ef_search": getattr(vectors, "ef_search", None) or None,
                "rerank": cache.rerank() if on_disk else 0,
                "recall_at_10_rerank": getattr(vectors, "recall_at_10_rerank", None) if on_disk else None,
                "on_disk": on_disk,
                "memory": {"expected_bytes": plan.expected_bytes if plan.factory == vectors.index_type
                           else _expected_bytes(vectors), "budget_bytes": plan.budget_bytes,
                           "rule": plan.reason, "planned_type": plan.factory}}


class IndexWriter:
    """Applies changes to an index: the catalog first, then the FAISS cache, so they never disagree.

    Get one from :meth:`Index.writer`; it is valid while that context is open.
    """

    def __init__(self, index: Index):
        self._index = index
        self.rebuild_needed = False

    @property
    def catalog(self) -> Catalog:
        return self._index.catalog

    def apply(self, batch: ChangeSet) -> Applied:
        """Apply one batch: one catalog transaction, then the same change to the FAISS cache."""
        applied = self.catalog.apply(batch)
        if batch.identity is not None:
            self._index._identity = None  # read again: the first batch of a new index sets it
        if self._index.identity is not None:
            self._index._vector_cache().apply(applied)
        return applied

    def configure(self, max_index_memory: int | None = None, rerank: int | None = None,
                  vector_dtype: str | None = None) -> None:
        """Remember index settings: the memory budget that picks the index type, the re-rank depth,
        and (for an index without vectors yet) how vectors are stored (``float32``/``float16``)."""
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
            ident = self._index.identity
            VectorIndex.validate_type(index_type, ident.dim if ident else 512)
        if index_type != self._index.index_type:
            self.catalog.set_setting("index_type", index_type)
            self.rebuild_needed = True

    def invalidate_vectors(self, delete_files: bool = False) -> None:
        """Drop the FAISS cache (and its file): :meth:`finish` rebuilds it from the catalog."""
        if self._index.identity is not None:
            self._index._vector_cache().invalidate(delete_files)

    def finish(self, embedder=None) -> None:
        """After a run: retrain or rebuild the FAISS index if the collection outgrew it, save it, and
        export the text tower if the index has no usable one."""
        if self._index.identity is None:
            return
        self._index._vector_cache().finish(force_rebuild=self.rebuild_needed)
        self._index._model.ensure_text_encoder(embedder)
        try:  # embedded now, so that the first query does not pay for it
            self._index._model.bank_vectors()
        except Exception as e:  # queries embed it later; indexing is done and must not fail here
            log.warning("could not embed the relevance bank (%s: %s)", type(e).__name__, e)


def _expected_bytes(vectors) -> int:
    from .indexplan import _expected

    return _expected(vectors.index_type, vectors.ntotal, vectors.dim)


def open_index(path: str | os.PathLike, device: str = "auto", catalog: str | None = None) -> Index:
    """Open an existing index directory for searching (see :class:`Index`)."""
    return Index.open(path, device=device, catalog=catalog)


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SearchlibError(f"cannot create index directory {directory}: {e.strerror or e}") from e


def _call(fn, errors: list) -> None:
    try:
        fn()
    except BaseException as e:  # handed to the caller's thread
        errors.append(e)


def _is_pil(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, Image.Image)


def _as_term(value: Any, sign: float) -> QueryTerm:
    if isinstance(value, QueryTerm):
        return QueryTerm(value.value, sign * value.weight, value.kind)
    if isinstance(value, str):
        return parse_term(value, sign)
    if isinstance(value, np.ndarray):
        return QueryTerm(value, sign, "vector")
    return QueryTerm(value, sign, "image")


def _checked_vector(vector: np.ndarray, identity: ModelIdentity | None) -> np.ndarray:
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if identity is not None and vec.shape[0] != identity.dim:
        raise QueryError(f"a query vector needs {identity.dim} dimensions (the index's model), not {vec.shape[0]}")
    if not np.isfinite(vec).all() or not np.any(vec):
        raise QueryError("a query vector must be finite and not all zeros")
    return vec
