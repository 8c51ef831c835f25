"""An index directory: the catalog, the FAISS cache, the model identity and the writer lock."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .catalog import Catalog
from .config import CATALOG_FILE, LOCK_FILE, VECTORS_FILE, VECTORS_STAMP_FILE
from .errors import ImageDecodeError, IndexBusyError, IndexNotFoundError, SearchlibError
from .filters import Filters
from .models import ModelIdentity
from .query import Hit, QueryTerm, combine, parse_query, parse_term, relevance_cut, search_vector, sort_by_date
from .vectors import VectorIndex, choose_index_type

log = logging.getLogger(__name__)


class Index:
    """One searchlib index directory.

    Use :func:`open_index` to open an existing index for searching; the indexer creates them.
    Methods that embed text load the index's own model on first use and keep it warm.
    """

    def __init__(self, directory: Path, catalog: Catalog, device: str = "auto"):
        self.directory = directory
        self.catalog = catalog
        self.device = device
        self._vectors: VectorIndex | None = None
        self._vectors_generation: int | None = None
        self._embedder = None
        self._text_encoder = None
        self._writing = False

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike, device: str = "auto") -> Index:
        """Open an existing index.

        Raises:
            IndexNotFoundError: the directory holds no index.
            IndexCorruptError: the catalog cannot be read.
        """
        directory = Path(directory).expanduser().resolve()
        if not (directory / CATALOG_FILE).is_file():
            raise IndexNotFoundError(
                f"no index at {directory}; create one with 'searchlib index PATH' (or pass --index DIR)"
            )
        return cls(directory, Catalog(directory / CATALOG_FILE), device)

    @classmethod
    def open_or_create(cls, directory: str | os.PathLike, device: str = "auto") -> Index:
        """Open the index at ``directory``, creating the directory and an empty catalog if needed."""
        directory = Path(directory).expanduser().resolve()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SearchlibError(f"cannot create index directory {directory}: {e.strerror or e}") from e
        return cls(directory, Catalog(directory / CATALOG_FILE, create=True), device)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def identity(self) -> ModelIdentity | None:
        """The model this index's vectors come from (None for an empty, new index)."""
        return self.catalog.model_identity()

    # -- the writer lock ---------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the index's exclusive writer lock (one indexer at a time; readers are never blocked).

        Raises:
            IndexBusyError: another process is writing to this index.
        """
        fd = self._lock(blocking_error=True)
        assert fd is not None
        self._writing = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            self._writing = False
            os.close(fd)  # closing releases the flock

    def _lock(self, blocking_error: bool) -> int | None:
        """Take the writer lock without waiting: its fd, or None (or IndexBusyError) when held."""
        import fcntl

        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            if not blocking_error:
                return None
            raise IndexBusyError(
                f"another searchlib process (pid {holder}) is indexing into {self.directory}; "
                "wait for it to finish and run again"
            ) from e

    # -- vectors -----------------------------------------------------------------------------
    @property
    def index_type(self) -> str:
        """The requested FAISS index type: ``auto`` (by collection size) or a factory string."""
        return self.catalog.get_setting("index_type", "auto") or "auto"

    def set_index_type(self, index_type: str) -> None:
        """Request an index type (``auto`` or a FAISS factory string); applied at the next rebuild."""
        if index_type != self.index_type:
            self.catalog.set_setting("index_type", index_type)
            self.invalidate_vectors()

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index, loaded from its file when its stamp matches the catalog, else rebuilt."""
        generation = self.catalog.generation()
        if self._vectors is not None and self._vectors_generation == generation:
            return self._vectors
        ident = self.identity
        dim = ident.dim if ident else 0
        count = self.catalog.count()
        loaded = VectorIndex.load(self.directory / VECTORS_FILE, self.directory / VECTORS_STAMP_FILE,
                                  generation, count, dim, writable=self._writing) if ident else None
        if loaded is None or (self._writing and loaded.needs_rebuild(count, self.index_type)):
            loaded, generation = self._rebuild_vectors(dim)
        self._vectors, self._vectors_generation = loaded, generation
        return loaded

    def _rebuild_vectors(self, dim: int) -> tuple[VectorIndex, int]:
        generation, ids, vecs = self.catalog.snapshot_vectors()
        dim = dim or (vecs.shape[1] if vecs.size else 1)
        index_type = choose_index_type(len(ids), dim, self.index_type)
        log.info("building %s vector index from %d stored vectors", index_type, len(ids))
        vi = VectorIndex.build(dim, ids, vecs, index_type, fallback=True)
        # Only the lock holder writes the cache: two writers could pair one's file with the
        # other's stamp. A reader that finds an indexer running just searches its in-memory copy.
        fd = None
        try:
            fd = None if self._writing else self._lock(blocking_error=False)
            if self._writing or fd is not None:
                vi.save(self.directory / VECTORS_FILE, self.directory / VECTORS_STAMP_FILE, generation)
        except OSError as e:  # a read-only index still searches; the cache just is not saved
            log.warning("cannot save vector index: %s", e)
        finally:
            if fd is not None:
                os.close(fd)
        return vi, generation

    def finish_writing(self, force_rebuild: bool = False) -> None:
        """After an indexing run: retrain/rebuild if the collection outgrew its index, then save."""
        vectors = self.vectors
        if force_rebuild or vectors.needs_rebuild(vectors.ntotal, self.index_type):
            self.invalidate_vectors()
            self._vectors, self._vectors_generation = self._rebuild_vectors(vectors.dim)
        else:
            self.save_vectors()

    def invalidate_vectors(self) -> None:
        """Forget the in-memory FAISS index; the next use loads or rebuilds it."""
        self._vectors = self._vectors_generation = None

    def adopt_vectors(self, vectors: VectorIndex, generation: int) -> None:
        """Take an index the caller kept in step with the catalog (the indexer's running copy)."""
        self._vectors, self._vectors_generation = vectors, generation

    def save_vectors(self) -> None:
        """Persist the current FAISS index with its stamp."""
        if self._vectors is not None and self._vectors_generation is not None:
            self._vectors.save(self.directory / VECTORS_FILE, self.directory / VECTORS_STAMP_FILE,
                               self._vectors_generation)

    # -- embedding and search ----------------------------------------------------------------
    def embedder(self):
        """The index's own model (loaded once, kept warm)."""
        if self._embedder is None:
            from .embedding import Embedder

            ident = self.identity
            if ident is None:
                raise IndexNotFoundError(f"the index at {self.directory} is empty; index some images first")
            self._embedder = Embedder(ident.to_spec(), device=self.device, expected=ident)
        return self._embedder

    def text_encoder(self):
        """The exported ONNX text tower (no torch needed), or None to use the full model.

        Used unless the index was opened with ``device="cuda"``, where the model runs on the GPU.
        """
        if self._text_encoder is None:
            from .textenc import OnnxTextEncoder

            ident = self.identity
            found = OnnxTextEncoder.for_index(self.directory, ident) if ident and self.device != "cuda" else None
            self._text_encoder = found or False
        return self._text_encoder or None

    def ensure_text_encoder(self, embedder) -> None:
        """Export the text tower for fast cold queries if the index has none for its model."""
        from .textenc import OnnxTextEncoder, export_text_encoder

        ident = self.identity
        if ident is None or OnnxTextEncoder.for_index(self.directory, ident) is not None:
            return
        try:
            export_text_encoder(embedder, self.directory)
        except Exception as e:  # queries still work through the full model
            log.warning("could not export the text encoder (%s: %s); queries will load the full model",
                        type(e).__name__, e)
        self._text_encoder = None

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized text vectors in this index's space."""
        encoder = self.text_encoder()
        if encoder is not None:
            return encoder.embed_texts(list(texts))
        return self.embedder().embed_texts(list(texts))

    def embed_images(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        """Normalized image vectors in this index's space."""
        return self.embedder().embed_images(list(paths))

    def search(self, text: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` images closest to ``text``, best first (``text`` may combine terms, see :meth:`query`)."""
        return self.query(text, k=k, filters=filters)

    def image_vector(self, path: str | os.PathLike) -> np.ndarray:
        """The vector of an image file: the stored one if its bytes are indexed, else embedded now."""
        import hashlib

        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ImageDecodeError(f"cannot read {path}: {e.strerror or e}") from e
        stored = self.catalog.vectors_by_hash([hashlib.sha256(data).hexdigest()])
        if stored:
            return next(iter(stored.values()))
        return self.embedder().embed_images([data])[0]

    def query_vector(self, query: str | Sequence[QueryTerm] = "", add: Sequence[str] = (),
                     subtract: Sequence[str] = ()) -> np.ndarray:
        """One normalized vector for a combined query.

        Args:
            query: text such as ``"beach + sunset - people"`` (only `` + ``/`` - `` with spaces split;
                ``2:sunset`` weighs a term; an existing file path is an image), or parsed terms.
            add, subtract: more terms (texts or image paths, optionally ``weight:``-prefixed).
        """
        terms = list(parse_query(query) if isinstance(query, str) and query.strip() else (query or []))
        terms += [parse_term(t) for t in add] + [parse_term(t, -1.0) for t in subtract]
        if not terms:
            raise SearchlibError("the query is empty; say what to look for, e.g. 'a dog on a beach'")
        texts = [t.value for t in terms if not t.is_image]
        text_vecs = iter(self.embed_texts(texts)) if texts else iter(())
        vecs = [self.image_vector(t.value) if t.is_image else next(text_vecs) for t in terms]
        if len(terms) == 1 and terms[0].weight > 0:
            return vecs[0]
        return combine(np.stack(vecs), [t.weight for t in terms])

    def query(self, query: str | Sequence[QueryTerm] = "", k: int = 10, *, add: Sequence[str] = (),
              subtract: Sequence[str] = (), filters: Filters | None = None, min_score: float | None = None,
              relative: float | None = None, sort: str = "score") -> list[Hit]:
        """Search with combined terms, filters inside the vector search, a relevance cut and sorting.

        Args:
            query, add, subtract: see :meth:`query_vector`.
            k: at most this many hits; with filters, ``k`` matching hits whenever ``k`` exist.
            filters: metadata conditions (:class:`~searchlib.filters.Filters`).
            min_score: drop hits below this cosine similarity.
            relative: drop hits scoring below ``best - relative * |best|``.
            sort: ``score`` (best first) or ``date`` (the kept hits, oldest first).
        """
        if sort not in ("score", "date"):
            raise SearchlibError(f"unknown sort {sort!r}; use score or date")
        # Load (or map) the FAISS index while the query is embedded: a cold query pays for one.
        loader = threading.Thread(target=lambda: self.vectors, name="searchlib-load-vectors")
        loader.start()
        try:
            vector = self.query_vector(query, add, subtract)
        finally:
            loader.join()
        hits = relevance_cut(self.search_vector(vector, k, filters), min_score, relative)
        return sort_by_date(hits) if sort == "date" else hits

    def search_vector(self, vector: np.ndarray, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` images closest to a query vector (normalized here)."""
        from .embedding import normalize

        return search_vector(self.catalog, self.vectors, normalize(vector)[0], k, filters)

    # -- listing -----------------------------------------------------------------------------
    def images(self) -> Iterator[dict]:
        """Every indexed image as ``{"id", "path", **metadata}``, ordered by path."""
        for row in self.catalog.iter_rows():
            yield {"id": row.id, "path": row.path, **row.metadata_dict()}

    def info(self) -> dict:
        """Counts, model, index type and sizes on disk."""
        ident = self.identity
        vectors = self.vectors
        files = [CATALOG_FILE, CATALOG_FILE + "-wal", VECTORS_FILE, "text_encoder.onnx"]
        sizes = {name: (self.directory / name).stat().st_size for name in files
                 if (self.directory / name).exists()}
        return {
            "index": str(self.directory),
            "images": self.catalog.count(),
            "vectors": vectors.ntotal,
            "model": ident.to_dict() if ident else None,
            "index_type": vectors.index_type,
            "index_type_requested": self.index_type,
            "exact": vectors.exact,
            "recall_at_10": vectors.recall_at_10,
            "nprobe": vectors.nprobe or None,
            "dim": vectors.dim,
            "schema": self.catalog.schema_revision(),
            "bytes_on_disk": sizes,
        }


def open_index(path: str | os.PathLike, device: str = "auto") -> Index:
    """Open an existing index directory for searching (see :class:`Index`)."""
    return Index.open(path, device=device)
