"""Queries: text, images and their combinations in, ranked hits with catalog metadata out."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from .catalog import Catalog
from .errors import ConfigError
from .filters import Filters
from .vectors import VectorIndex


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1-based position.
        id: catalog row id (also the FAISS id).
        path: absolute file path.
        score: cosine similarity between the query and the image (inner product of unit vectors).
        metadata: size, mtime, dimensions, format, EXIF capture time, camera, GPS, ...
    """

    rank: int
    id: int
    path: str
    score: float
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: ``rank, id, path, score`` plus every metadata field."""
        return {"rank": self.rank, "id": self.id, "path": self.path, "score": self.score, **self.metadata}


@dataclass(frozen=True)
class QueryTerm:
    """One part of a combined query: a text or an image file, with a signed weight."""

    value: str
    weight: float = 1.0
    is_image: bool = False


_WEIGHT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*:\s*(.+)$")
_SPLIT = re.compile(r"\s+([+-])\s+")


def parse_term(text: str, sign: float = 1.0) -> QueryTerm:
    """``"sunset"``, ``"2:sunset"`` or an image path (an existing file) -> a :class:`QueryTerm`."""
    weight = 1.0
    match = _WEIGHT.match(text)
    if match:
        weight, text = float(match.group(1)), match.group(2)
    text = text.strip()
    if not text:
        raise ConfigError("an empty query term; write e.g. 'beach + sunset - people'")
    is_image = os.path.isfile(os.path.expanduser(text))
    return QueryTerm(os.path.abspath(os.path.expanduser(text)) if is_image else text, sign * weight, is_image)


def parse_query(text: str) -> list[QueryTerm]:
    """Split ``"beach + sunset - people"`` into terms. Only `` + `` and `` - `` with spaces split,
    so ``t-shirt`` and ``black-and-white`` stay whole."""
    parts = _SPLIT.split(f" {text.strip()} ".strip())
    terms = [parse_term(parts[0])]
    for op, value in zip(parts[1::2], parts[2::2]):
        terms.append(parse_term(value, 1.0 if op == "+" else -1.0))
    return terms


def combine(vectors: np.ndarray, weights: list[float]) -> np.ndarray:
    """Weighted sum of unit vectors, renormalized (the query direction in embedding space)."""
    from .embedding import normalize

    total = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    if not np.any(total):
        raise ConfigError("the query terms cancel out; change their weights")
    return normalize(total)[0]


def _hits(catalog: Catalog, pairs: list[tuple[int, float]]) -> list[Hit]:
    rows = catalog.rows([i for i, _ in pairs])
    tags = catalog.tags_of([i for i, _ in pairs])
    hits: list[Hit] = []
    for image_id, score in pairs:
        row = rows.get(image_id)
        if row is None:  # deleted after the FAISS snapshot was taken; skip rather than fail
            continue
        meta = {**row.metadata_dict(), "tags": sorted(tags.get(image_id, []))}
        hits.append(Hit(len(hits) + 1, image_id, row.path, score, meta))
    return hits


def search_vector(catalog: Catalog, vectors: VectorIndex, query: np.ndarray, k: int,
                  filters: Filters | None = None) -> list[Hit]:
    """Top-``k`` images for one normalized query vector, best first.

    With filters, only matching images are searched (FAISS ID selector), and ``k`` hits come
    back whenever ``k`` images match: an approximate index that finds fewer is searched again
    exhaustively over the matching ids.
    """
    if k < 1:
        return []
    query = query.reshape(1, -1)
    if filters is None or filters.is_empty():
        scores, ids = vectors.search(query, k)
    else:
        allowed = catalog.filtered_ids(filters)
        if len(allowed) == 0:
            return []
        scores, ids = vectors.search_subset(query, k, allowed)
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    return _hits(catalog, pairs)


def relevance_cut(hits: list[Hit], min_score: float | None = None, relative: float | None = None) -> list[Hit]:
    """Drop weak hits: below ``min_score``, or more than ``relative`` × |best| below the best score."""
    if not hits:
        return hits
    best = hits[0].score
    keep = [h for h in hits
            if (min_score is None or h.score >= min_score)
            and (relative is None or h.score >= best - relative * abs(best))]
    return keep


def sort_by_date(hits: list[Hit]) -> list[Hit]:
    """Re-rank hits by capture date (EXIF, else mtime), oldest first; ranks follow the new order."""
    from datetime import datetime

    def when(h: Hit) -> str:
        taken = h.metadata.get("taken_at")
        if taken:
            return str(taken)
        return datetime.fromtimestamp(h.metadata.get("mtime") or 0).isoformat()

    ordered = sorted(hits, key=when)
    return [Hit(i + 1, h.id, h.path, h.score, h.metadata) for i, h in enumerate(ordered)]
