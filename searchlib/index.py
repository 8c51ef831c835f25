"""An index: the public face over the catalog, the FAISS cache, the model and the writer lock.

:class:`Index` composes small collaborators that share one :class:`~searchlib.store.IndexStore`
(the catalog, this machine's vector cache, the model): :class:`~searchlib.search.Searcher` takes
terms to a vector, to hits, to relevance; :class:`~searchlib.writer.IndexWriter` is the one write
path (the catalog, then the FAISS cache, so rows, vectors and the generation always move
together); :func:`~searchlib.info.index_info` reports what the index holds.

An ``Index`` is safe to share between threads for searching (a web server does); writes are one
writer at a time (:meth:`Index.writer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import ChangeSet, open_catalog
from .config import CATALOG_FILE
from .errors import ImageNotFoundError, IndexNotFoundError, QueryError, SearchlibError, read_only_error
from .filters import Filters
from .models import ModelIdentity
from .places import PlaceQuery
from .query import MAX_K, Hit
from .records import StoredImage
from .relevance import RelevanceScorer
from .search import Searcher
from .store import IndexStore
from .vectors import VectorIndex
from .writer import IndexWriter, writing

if TYPE_CHECKING:
    from .catalog import Catalog, QuickCatalog

__all__ = ["MAX_K", "Index", "IndexWriter", "open_index"]


class Index:
    """One searchlib index: a catalog (SQLite in ``directory``, or a database URL) and this
    machine's caches in ``directory``.

    Use :func:`open_index` to open an existing index; :func:`searchlib.index_folder` creates them.
    Methods that embed load the index's own model on first use and keep it warm.
    """

    def __init__(self, directory: Path, catalog: Catalog | QuickCatalog, device: str = "auto"):
        self.store = IndexStore(directory, catalog, device)
        self.searcher = Searcher(self.store)
        self.directory, self.catalog, self.device = directory, catalog, device
        self.read_only = self.store.read_only

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
            # Searching needs no SQLAlchemy: the full catalog opens when something else is asked.
            return cls(directory, open_catalog(path, read_only=not writable), device)
        from .catalog import Catalog

        return cls(directory, _with_dir(Catalog(catalog), directory), device)

    @classmethod
    def open_or_create(cls, directory: str | os.PathLike, device: str = "auto", catalog: str | None = None) -> Index:
        """Open the index at ``directory``, creating the directory and an empty catalog if needed."""
        from .catalog import Catalog

        directory = Path(directory).expanduser().resolve()
        if catalog is not None:  # the database first: a catalog that cannot be reached leaves no directory
            opened = _with_dir(Catalog(catalog, create=True), directory)
            if not os.access(directory, os.W_OK):
                opened.close()
                raise read_only_error(f"the index at {directory}")
            return cls(directory, opened, device)
        _make_dir(directory)
        local = directory / CATALOG_FILE
        if not os.access(directory, os.W_OK) or (local.exists() and not os.access(local, os.W_OK)):
            raise read_only_error(f"the index at {directory}")
        return cls(directory, Catalog(local, create=True), device)

    def close(self) -> None:
        self.searcher.close()
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what it holds -----------------------------------------------------------------------
    @property
    def identity(self) -> ModelIdentity | None:
        """The model this index's vectors come from (None for an empty, new index)."""
        return self.store.identity

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index as of the catalog's current generation (read-only use)."""
        return self.store.vector_cache().get()

    @property
    def index_type(self) -> str:
        """The requested FAISS index type: ``auto`` (by collection size) or a factory string."""
        return self.store.index_type

    def generation(self) -> int:
        """The catalog's generation: it moves whenever an indexer commits (a cheap way to notice)."""
        return self.catalog.generation()

    def info(self) -> dict:
        """Counts, model, index type and its recall, sizes on disk (see :func:`searchlib.info.index_info`)."""
        from .info import index_info

        return index_info(self.store)

    def image(self, image_id: int) -> StoredImage:
        """One indexed image by id.

        Raises:
            ImageNotFoundError: no image has this id.
        """
        found = self.catalog.images([int(image_id)])
        if int(image_id) not in found:
            raise ImageNotFoundError(f"no indexed image has id {image_id}")
        return found[int(image_id)]

    def images(self) -> Iterator[dict]:
        """Every indexed file as ``{"id", "path", **metadata}``, ordered by path. A video comes once
        (its first segment's row) with ``segments``, how many it has, and its ``duration``."""
        video: dict | None = None
        for row in self.catalog.iter_images():
            if video is not None and row.path == video["path"]:
                video["segments"] += 1
                continue
            if video is not None:
                yield video
                video = None
            entry = {"id": row.id, "path": row.path, **row.to_dict()}
            if row.record.segment is None:
                yield entry
            else:
                for name in ("start", "end", "part"):
                    entry.pop(name, None)
                video = {**entry, "segments": 1}
        if video is not None:
            yield video

    def thumbnail(self, image_id: int, size: int = 256):
        """A JPEG thumbnail of an indexed image fitted into ``size`` pixels (EXIF orientation applied),
        cached in the index directory: :class:`searchlib.thumbnails.Thumbnail` (``path``, ``etag``).

        Raises:
            ImageNotFoundError: no image has this id, or its file is not the indexed one any more
                (changed or replaced since it was indexed: a thumbnail is only made of the indexed
                bytes).
            ImageDecodeError: the file is gone or no longer an image.
        """
        from .media import is_video_name
        from .thumbnails import thumbnail

        found = self.catalog.file_of(image_id)
        if found is None:
            raise ImageNotFoundError(f"no indexed image has id {image_id}")
        at = None
        row = self.catalog.images([image_id]).get(image_id) if is_video_name(found[0]) else None
        if row is not None and row.record.segment is not None:  # a frame from inside the segment
            at = (row.record.segment.start + row.record.segment.end) / 2
        return thumbnail(self.directory, found[0], found[1], size, at=at)

    # -- writing -----------------------------------------------------------------------------
    @contextmanager
    def writer(self, roots: Sequence[str] | None = None) -> Iterator[IndexWriter]:
        """Hold the right to write (one writer per index; on PostgreSQL, per folder) and get the
        :class:`IndexWriter` that applies changes.

        Raises:
            IndexBusyError: another process is writing.
            IndexReadOnlyError: the index cannot be written.
        """
        with writing(self.store, roots) as writer:
            yield writer

    def remove(self, paths: Sequence[str | os.PathLike]) -> int:
        """Remove these files' rows and vectors from the index (the files stay on disk).

        Returns how many were indexed. Paths are matched as absolute paths.
        """
        wanted = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
        states = self.catalog.file_states(wanted)
        found = {p: states[p] for p in wanted if p in states}
        ids = sorted({i for state in found.values() for i in state.all_ids})  # a video: every segment
        if ids:
            with self.writer() as writer:
                writer.apply(ChangeSet(removed=ids))
                writer.finish()
        return len(found)

    # -- embedding ---------------------------------------------------------------------------
    def embedder(self):
        """The index's own full model (loaded once, kept warm)."""
        return self.store.model.embedder()

    def text_encoder(self):
        """The exported ONNX text tower (no torch needed), or None when texts use the full model."""
        return self.store.model.text_encoder()

    def expect_few_queries(self) -> None:
        """Say that this process will encode a text or two, not many (a command-line search): the
        text tower then loads without repacking its weights, which takes ViT-B-32's tower from
        about 0.2 s to 0.03 s to load and makes each text about twice as slow to encode (28 ms
        instead of 14 on 2 cores). Its vectors differ by about 1e-6, and are cached apart. Call it
        before the first text query; a tower already loaded stays as it is."""
        self.store.model.few_queries = True

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized text vectors in this index's space, ``(len(texts), dim)`` float32."""
        return self.searcher.embed_texts(texts)

    def embed_images(self, images: Sequence[str | os.PathLike | bytes | Any]) -> np.ndarray:
        """Normalized image vectors (file paths, encoded bytes or ``PIL.Image``) in this index's space."""
        return self.store.model.embed_images(images)

    def vector_of(self, image_id: int) -> np.ndarray:
        """The stored vector of an indexed image.

        Raises:
            ImageNotFoundError: no image has this id.
        """
        return self.searcher.vector_of(image_id)

    def image_vector(self, image: str | os.PathLike | bytes | Any) -> np.ndarray:
        """The vector of an image: the stored one if its bytes are indexed, else embedded now."""
        return self.searcher.image_vector(image)

    def batch_queries(self, max_batch: int = 32) -> None:
        """Serve concurrent threads in batches: their texts share one encoder call and their
        unfiltered searches one scan of the vectors (a server under load answers more queries per
        second; a lone query is not delayed). See :mod:`searchlib.batching`."""
        self.searcher.batch_queries(max_batch)

    # -- searching ---------------------------------------------------------------------------
    def query_warnings(self, query: Any = "", add: Sequence = (), subtract: Sequence = ()) -> list[str]:
        """Warnings about a query, without running it: text in a script the index's model was not
        trained to read (e.g. Chinese or Cyrillic for an English-only model), and a combined text
        query, whose hits carry no relevance (see :func:`searchlib.query.relevance_withheld`)."""
        from .languages import query_warning
        from .query import relevance_withheld

        warnings: list[str] = []
        ident = self.identity
        texts = [query] if isinstance(query, str) else []
        texts += [t for t in add if isinstance(t, str)]
        if ident is not None and texts:
            warning = query_warning(" ".join(texts), ident.arch, ident.name)
            if warning:
                warnings.append(warning)
        if isinstance(query, str) and query.strip() and (place := self.place_query(query).warning):
            warnings.append(place)
        try:
            terms = self.searcher.terms(query, add, subtract)
        except QueryError:  # the search itself says what is wrong with it
            return warnings
        if all(t.kind == "text" for t in terms) and (reason := relevance_withheld(terms)):
            warnings.append(f"{reason}; hits are ranked by score alone")
        return warnings

    def place_query(self, text: str) -> PlaceQuery:
        """Read the trailing "in / at / near PLACE" of a text query.

        "a red circle in Tokyo" gives ``text="a red circle"``, ``places=("Tokyo",)`` when a photo
        in the index was taken in Tokyo (city, region or country, by GPS); "a man in black" stays
        whole; a place the index holds no photo from gives ``missing`` and a ``warning``, and the
        query stays whole. :meth:`search` does this itself for a string query.
        """
        return self.searcher.place_query(text)

    def query_vector(self, query: Any = "", add: Sequence = (), subtract: Sequence = ()) -> np.ndarray:
        """One normalized vector for a combined query.

        Args:
            query: text such as ``"beach + sunset - people"`` (only `` + ``/`` - `` with spaces split;
                ``2:sunset`` weighs a term; a string is always text), an image (``pathlib.Path``,
                bytes, ``PIL.Image``), a vector, or a list of :class:`~searchlib.query.QueryTerm`.
            add, subtract: more terms (texts, which may be ``weight:``-prefixed; images as
                ``pathlib.Path``, bytes or ``PIL.Image``; vectors).
        """
        return self.searcher.query_vector(self.searcher.terms(query, add, subtract))

    def search(self, query: Any = "", k: int = 10, *, offset: int = 0, add: Sequence = (),
               subtract: Sequence = (), filters: Filters | None = None, min_score: float | None = None,
               relative: float | None = None, relevant: bool = False, sort: str = "score",
               rerank: int | None = None, collapse: bool = False, places: bool = True,
               all_segments: bool = False) -> list[Hit]:
        """The images (and video segments) that best match ``query``, best first.

        A string query ending in "in / at / near PLACE" that names a place in the index (see
        :meth:`place_query`) searches for the rest of the text among the photos taken there.

        Hits of text queries carry a calibrated ``relevance`` (0..1, the same scale for every
        query; see :mod:`searchlib.relevance`) besides the raw cosine ``score``.

        Args:
            query: text (``"beach + 2:sunset - people"``; a string is always text), an image
                (``pathlib.Path``, bytes, ``PIL.Image``), a vector (e.g. :meth:`vector_of` for
                "more like this"), or terms; see :meth:`query_vector`.
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
            sort: ``score`` (best first), ``date`` (newest first) or ``date-asc`` (oldest first).
                With a cut (``relevant``, ``min_score``, ``relative``) every kept hit is ordered
                by date and then paged; without one each page holds the next ``k`` best hits, in
                date order (see :mod:`searchlib.results`).
            rerank: on an index of compressed codes, re-rank this many candidates exactly from the
                stored vectors (default: the index's setting, 100; 0 turns it off).
            collapse: fold the near-duplicates of a better hit into it (cosine above
                :data:`~searchlib.query.DUPLICATE_THRESHOLD`, the ``duplicates`` command's
                threshold): each hit then lists the folded ids in ``duplicates``; ``k`` and
                ``offset`` count the hits that remain.
            places: read a trailing place phrase of a string ``query`` (False: the text is taken
                as it is).
            all_segments: every matching segment of a video is a hit of its own; by default a
                video's best segment is the hit and its other matching segments fold into it
                (:attr:`Hit.segments`).

        Raises:
            QueryError: an empty query, a bad term or parameter.
            IndexNotFoundError: the index is empty.
        """
        if isinstance(query, str) and query.strip() and places:
            read = self.place_query(query)
            if read.places:
                query = read.text
                filters = replace(filters or Filters(), places=(filters.places if filters else ()) + read.places)
        terms = self.searcher.terms(query, add, subtract)
        return self.searcher.search(terms, k, offset=offset, filters=filters, min_score=min_score,
                                    relative=relative, relevant=relevant, sort=sort, rerank=rerank,
                                    collapse=collapse, all_segments=all_segments)

    def relevance_scorer(self) -> RelevanceScorer:
        """What judges relevance here (see :meth:`searchlib.search.Searcher.relevance_scorer`)."""
        return self.searcher.relevance_scorer()


def open_index(path: str | os.PathLike, device: str = "auto", catalog: str | None = None) -> Index:
    """Open an existing index directory for searching (see :class:`Index`)."""
    return Index.open(path, device=device, catalog=catalog)


def _with_dir(catalog: Catalog, directory: Path) -> Catalog:
    """``catalog``, once this machine's cache directory for it exists (closed if it cannot be made)."""
    try:
        _make_dir(directory)
    except SearchlibError:
        catalog.close()
        raise
    return catalog


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SearchlibError(f"cannot create index directory {directory}: {e.strerror or e}") from e

