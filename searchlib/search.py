"""Searching an index: terms to a vector, the vector to hits, hits to relevance.

:class:`Searcher` is what :meth:`searchlib.index.Index.search` runs. It embeds the text terms
(the exported ONNX text tower, or the full model), takes stored vectors for indexed images and
embeds the rest, combines the terms (:func:`searchlib.query.combine`), searches the FAISS cache
(filters become an id selector, so ``k`` matching hits come back whenever they exist), builds the
hits from catalog rows in one place (:meth:`Searcher.hits`), and adds each text query's calibrated
relevance. A server calls :meth:`Searcher.batch_queries` so that concurrent queries share encoder
calls and vector scans.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import ImageNotFoundError, QueryError
from .filters import Filters
from .models import ModelIdentity
from .places import PlaceQuery, normalize_name, read_place_phrase
from .places.names import PlaceNames
from .query import (
    MAX_K,
    SORTS,
    Hit,
    QueryTerm,
    check_cut,
    check_terms,
    combine,
    fold_segments,
    parse_query,
    parse_term,
    relevance_withheld,
)
from .records import content_hash
from .relevance import RelevanceScorer
from .results import ResultPlan
from .store import IndexStore
from .vectorcache import VectorCache
from .wordfusion import FUSION_DEPTH, fuse, query_words

#: How many times ``k`` hits a search reads when videos' segments fold into one hit each.
FOLD_DEPTH = 4


class Searcher:
    """Embeds queries and searches one index (safe to share between threads).

    Args:
        store: the index's catalog, vector cache and model.
    """

    def __init__(self, store: IndexStore):
        self.store = store
        self._lock = threading.Lock()
        self.text_batcher = None
        self.search_batcher = None
        self._scorer: tuple[int | None, RelevanceScorer] | None = None
        #: Facts of the catalog read once per generation: name -> (generation, value).
        self._per_generation: dict[str, tuple[int, Any]] = {}

    def close(self) -> None:
        for batcher in (self.text_batcher, self.search_batcher):
            if batcher is not None:
                batcher.close()
        self.text_batcher = self.search_batcher = None

    # -- embedding ---------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized text vectors in the index's space, ``(len(texts), dim)`` float32."""
        if self.text_batcher is not None:
            return np.stack(self.text_batcher.submit(list(texts))) if texts else self.store.model.embed_texts([])
        return self.store.model.embed_texts(texts)

    def batch_queries(self, max_batch: int = 32) -> None:
        """Serve concurrent threads in batches: their texts share one encoder call and their
        unfiltered searches one scan of the vectors (see :mod:`searchlib.batching`)."""
        from .batching import Batcher

        with self._lock:
            if self.text_batcher is None:
                self.text_batcher = Batcher(lambda texts: list(self.store.model.embed_texts(texts)), max_batch,
                                            "searchlib-text-batcher")
                self.search_batcher = Batcher(self._search_many, max_batch, "searchlib-search-batcher")

    def _search_many(self, requests: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Unfiltered searches of several queries in one call: ``[(vector, k)] -> [(scores, ids)]``."""
        k = max(r[1] for r in requests)
        scores, ids = self.store.vector_cache().search(np.stack([r[0] for r in requests]), k)
        return [(scores[i, :kk], ids[i, :kk]) for i, (_, kk) in enumerate(requests)]

    def vector_of(self, image_id: int) -> np.ndarray:
        """The stored vector of an indexed image.

        Raises:
            ImageNotFoundError: no image has this id.
        """
        ids, vectors = self.store.catalog.vectors_of([int(image_id)])
        if not len(ids):
            raise ImageNotFoundError(f"no indexed image has id {image_id}")
        return vectors[0]

    def image_vector(self, image: str | os.PathLike | bytes | Any) -> np.ndarray:
        """The vector of an image: the stored one if its bytes are indexed, else embedded now."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            from .embedding import read_image_file

            data = bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else read_image_file(image)
            stored = self.store.catalog.vectors_by_hash([content_hash(data)])
            if stored:
                return next(iter(stored.values()))
            from .media import is_raw_name

            if isinstance(image, (bytes, bytearray, memoryview)) or not is_raw_name(os.fspath(image)):
                image = data  # read once; a RAW goes by its path, whose ending chooses its decoder
        return self.store.model.embed_images([image])[0]

    # -- places ------------------------------------------------------------------------------
    def place_names(self) -> PlaceNames:
        """The places this index's photos were taken in (read again when the catalog changes)."""
        return self._known("places", self.store.catalog.generation(), self.store.catalog.place_names)

    def _known(self, name: str, generation: int, read: Callable[[], Any]) -> Any:
        """``read()``, remembered until the catalog's generation moves past ``generation``."""
        with self._lock:
            known = self._per_generation.get(name)
        if known is None or known[0] != generation:
            known = (generation, read())
            with self._lock:
                self._per_generation[name] = known
        return known[1]

    def place_query(self, text: str) -> PlaceQuery:
        """``text`` with its trailing "in / at / near PLACE" read (see
        :func:`searchlib.places.read_place_phrase`): a place this index holds becomes a filter."""
        from .places.gazetteer import known_names

        held: list[PlaceNames] = []

        def holds(name: str) -> bool:  # the catalog is asked only when the text has a place phrase
            if not held:
                held.append(self.place_names())
            return held[0].holds(name, codes=False)

        return read_place_phrase(text, holds, lambda name: normalize_name(name) in known_names())

    # -- terms -------------------------------------------------------------------------------
    def terms(self, query: Any, add: Sequence = (), subtract: Sequence = ()) -> list[QueryTerm]:
        """The query's terms: a string is text (``"beach + 2:sunset - people"``); an image is a
        ``pathlib.Path``, bytes or a ``PIL.Image``; a vector is a numpy array; or a list of terms."""
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
        check_terms(terms)
        return terms

    def query_vector(self, terms: list[QueryTerm]) -> np.ndarray:
        """One normalized vector for the terms (texts embedded in one call)."""
        texts = [t.value for t in terms if t.kind == "text"]
        text_vecs = iter(self.embed_texts(texts)) if texts else iter(())
        vecs = []
        for t in terms:
            if t.kind == "text":
                vecs.append(next(text_vecs))
            elif t.kind == "vector":
                vecs.append(_checked_vector(t.value, self.store.identity))
            else:
                vecs.append(self.image_vector(t.value))
        if len(terms) == 1 and terms[0].weight > 0:
            from .vectormath import normalize

            return normalize(vecs[0])[0]
        return combine(np.stack(vecs), [t.weight for t in terms])

    # -- searching ---------------------------------------------------------------------------
    def search(self, terms: list[QueryTerm], k: int = 10, *, offset: int = 0, filters: Filters | None = None,
               min_score: float | None = None, relative: float | None = None, relevant: bool = False,
               sort: str = "score", rerank: int | None = None, collapse: bool = False,
               all_segments: bool = False) -> list[Hit]:
        """The best hits for ``terms`` (see :meth:`searchlib.index.Index.search`)."""
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        if not 1 <= k <= MAX_K or not 0 <= offset <= MAX_K - k:
            raise QueryError(f"k must be 1..{MAX_K} and offset 0..{MAX_K} - k (got k={k}, offset={offset})")
        check_cut(min_score, relative)
        if rerank is not None and not 0 <= rerank <= MAX_K:
            raise QueryError(f"rerank must be 0..{MAX_K}, not {rerank}")
        check_terms(terms)  # a caller may hand terms it built itself
        withheld = relevance_withheld(terms)
        if relevant and withheld:
            raise QueryError(f"{withheld}; drop --relevant, or cut with --min-score or --relative")
        cache = self.store.vector_cache()
        # Load (or map) the FAISS index while the query is embedded: a cold query pays for one.
        errors: list[BaseException] = []
        loader = threading.Thread(target=_call, args=(cache.get, errors), name="searchlib-load-vectors")
        loader.start()
        try:
            vector = self.query_vector(terms)
        finally:
            loader.join()
        if errors:  # reported here, in the caller's thread, never through threading.excepthook
            raise errors[0]
        textual = all(t.kind == "text" for t in terms)
        graded = textual and not withheld  # combined queries carry no relevance (query.relevance_withheld)
        generation = self.store.catalog.generation()  # once for both facts below
        words = query_words([t.value for t in terms if t.weight > 0]) \
            if textual and self._has_text(generation) else []
        fold = not all_segments and (filters is None or filters.media != "image") and self._has_video(generation)
        plan = ResultPlan(k, offset, sort, relevant, min_score, relative, collapse)
        window = plan.first_window()
        if fold:  # a video's segments fold into one hit: look deeper, so that k hits remain after folding
            window = min(MAX_K, max(window, FOLD_DEPTH * (offset + k)))
        while True:
            if words:
                found, worded = self._search_with_words(cache, vector, words, window, filters, rerank)
            else:
                found, worded = self._search_vector(cache, vector, window, filters, rerank), set()
            exhausted = len(found) < window or window >= MAX_K
            hits, vectors = (self.with_relevance(vector, found, keep_vectors=True) if graded
                             else self.with_vectors(found))
            kept = plan.keep(hits, vectors, worded)  # a word of the query written in a photo is evidence enough
            if fold:
                kept = fold_segments(kept)
            if plan.enough(kept, hits, exhausted):
                return plan.page(kept)
            window = min(MAX_K, window * 2)

    def _has_video(self, generation: int) -> bool:
        """Whether this index holds any video segment (looked up once per catalog generation)."""
        return self._known("video", generation, lambda: self.store.catalog.has_media("video"))

    def _has_text(self, generation: int) -> bool:
        """Whether this index reads words in images (looked up once per catalog generation)."""
        catalog = self.store.catalog
        return self._known("text", generation, lambda: catalog.get_setting("read_text") == "1" and catalog.has_text())

    def _search_with_words(self, cache: VectorCache, vector: np.ndarray, words: list[str], k: int,
                           filters: Filters | None, rerank: int | None) -> tuple[list[Hit], set[int]]:
        """The CLIP hits fused with the images whose read text holds the query's words
        (:mod:`searchlib.wordfusion`), and the ids of the latter."""
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = self.store.catalog.filtered_ids(filters, self.place_names() if filters.places else None)
        matches = self.store.catalog.text_matches(words, limit=FUSION_DEPTH, allowed=allowed)
        clip = self._search_vector(cache, vector, max(k, FUSION_DEPTH), filters, rerank)
        if not matches:
            return clip[:k], set()
        score_of = {h.id: h.score for h in clip}
        extra = [i for i, _ in matches if i not in score_of]
        if extra:
            ids, vectors = self.store.catalog.vectors_of(extra)
            score_of.update(zip(ids.tolist(), (vectors @ vector.reshape(-1)).tolist()))
        order = [i for i in fuse([h.id for h in clip], matches) if i in score_of][:k]
        return self.hits([(i, float(score_of[i])) for i in order]), {i for i, _ in matches}

    def _search_vector(self, cache: VectorCache, vector: np.ndarray, k: int, filters: Filters | None,
                       rerank: int | None = None) -> list[Hit]:
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = self.store.catalog.filtered_ids(filters, self.place_names() if filters.places else None)
            if len(allowed) == 0:
                return []
        if allowed is None and rerank is None and self.search_batcher is not None:
            ((row_scores, row_ids),) = self.search_batcher.submit([(vector.reshape(-1), k)])
            scores, ids = row_scores[None], row_ids[None]
        else:
            scores, ids = cache.search(vector.reshape(1, -1), k, allowed, rerank)
        return self.hits([(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0])

    def hits(self, pairs: list[tuple[int, float]]) -> list[Hit]:
        """The one place hits are made: catalog rows for ``(id, score)`` pairs, in order."""
        from .media import siblings_of

        rows = self.store.catalog.images([i for i, _ in pairs])
        siblings = siblings_of(row.path for row in rows.values())
        hits: list[Hit] = []
        for image_id, score in pairs:
            row = rows.get(image_id)
            if row is None:  # deleted after the FAISS snapshot was taken; skip rather than fail
                continue
            hits.append(Hit(len(hits) + 1, image_id, row.path, score, row.to_dict(),
                            siblings=tuple(siblings.get(row.path, ()))))
        return hits

    # -- relevance ---------------------------------------------------------------------------
    def relevance_scorer(self) -> RelevanceScorer:
        """What judges relevance here: a background sample of this index's vectors (drawn again
        when the collection changes) and the caption bank in the index's model."""
        generation = self.store.vector_cache().generation
        with self._lock:
            scorer = self._scorer
        if scorer is None or scorer[0] != generation:
            background = self.store.relevance_background(generation)
            scorer = (generation, RelevanceScorer(background, self.store.model.bank_vectors()))
            with self._lock:
                self._scorer = scorer
        return scorer[1]

    def with_vectors(self, hits: list[Hit]) -> tuple[list[Hit], np.ndarray]:
        """The hits that still have a stored vector, and those vectors (one row per hit)."""
        ids, vectors = self.store.catalog.vectors_of([h.id for h in hits])
        by_id = dict(zip(ids.tolist(), range(len(ids))))
        kept = [h for h in hits if h.id in by_id]  # a row deleted since the search: drop it, as hits() does
        rows = vectors[[by_id[h.id] for h in kept]] if kept else np.zeros((0, vectors.shape[1] if vectors.ndim == 2
                                                                              else 0), np.float32)
        return kept, rows

    def with_relevance(self, vector: np.ndarray, hits: list[Hit], keep_vectors: bool = False):
        """The hits with their calibrated relevance to the query ``vector`` (and, with
        ``keep_vectors``, their stored vectors as a second value)."""
        kept, rows = self.with_vectors(hits) if hits else (hits, np.zeros((0, 0), np.float32))
        if kept:
            scorer = self.relevance_scorer()
            figures = scorer.relevance(vector, np.array([h.score for h in kept], dtype=np.float32), rows)
            kept = [replace(h, relevance=round(float(r), 4)) for h, r in zip(kept, figures)]
        return (kept, rows) if keep_vectors else kept


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
