"""Queries: a text (or vector) in, ranked hits with their catalog metadata out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .catalog import Catalog
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


def search_vector(catalog: Catalog, vectors: VectorIndex, query: np.ndarray, k: int) -> list[Hit]:
    """Top-``k`` images for one normalized query vector, best first."""
    if k < 1:
        return []
    scores, ids = vectors.search(query.reshape(1, -1), k)
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    rows = catalog.rows([i for i, _ in pairs])
    hits: list[Hit] = []
    for image_id, score in pairs:
        row = rows.get(image_id)
        if row is None:  # deleted after the FAISS snapshot was taken; skip rather than fail
            continue
        hits.append(Hit(len(hits) + 1, image_id, row.path, score, row.metadata_dict()))
    return hits
