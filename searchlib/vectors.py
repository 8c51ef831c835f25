"""The FAISS inner-product index: a derived cache of the catalog's vectors.

FAISS ids are catalog primary keys (``IndexIDMap2``). The file is written atomically (temp file +
rename) next to a JSON stamp recording the catalog generation and row count it was built from; a
missing, stale or unreadable file is rebuilt from the catalog, never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stamp:
    """What a saved FAISS file was built from."""

    generation: int
    count: int
    dim: int
    index_type: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class VectorIndex:
    """An inner-product FAISS index whose ids are catalog row ids.

    Args:
        dim: vector dimension.
        index_type: FAISS factory string of the inner index (``Flat`` = exact search).
    """

    def __init__(self, dim: int, index_type: str = "Flat", index=None):
        import faiss

        self.dim = dim
        self.index_type = index_type
        if index is None:
            inner = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
            index = faiss.IndexIDMap2(inner)
        self.index = index

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, index_type: str = "Flat") -> VectorIndex:
        """A new index holding ``vectors`` under ``ids``."""
        vi = cls(dim, index_type)
        vi.add(ids, vectors)
        return vi

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present."""
        import faiss

        if len(ids) == 0:
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product: ``(scores, ids)``, each ``(n_queries, k')`` with k' <= k."""
        k = min(int(k), self.ntotal)
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, ids = self.index.search(queries, k)
        return scores, ids

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path, stamp_path: Path, generation: int) -> None:
        """Write the index and its stamp atomically (index first: a crash leaves a stale stamp)."""
        import faiss

        data = faiss.serialize_index(self.index).tobytes()
        _atomic_write_bytes(path, data)
        stamp = Stamp(generation, self.ntotal, self.dim, self.index_type)
        _atomic_write_bytes(stamp_path, json.dumps(stamp.to_dict()).encode())

    @classmethod
    def load(cls, path: Path, stamp_path: Path, generation: int, count: int, dim: int) -> VectorIndex | None:
        """The saved index if its stamp matches the catalog, else None (caller rebuilds)."""
        import faiss

        try:
            stamp = Stamp(**json.loads(stamp_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if (stamp.generation, stamp.count, stamp.dim) != (generation, count, dim):
            log.info("vector index stamp %s does not match catalog (gen %d, %d rows): rebuilding",
                     stamp, generation, count)
            return None
        try:
            index = faiss.read_index(str(path))
        except Exception as e:  # corrupt or truncated file
            log.warning("vector index %s unreadable (%s): rebuilding", path, e)
            return None
        if index.ntotal != count or index.d != dim:
            return None
        return cls(dim, stamp.index_type, index=index)
