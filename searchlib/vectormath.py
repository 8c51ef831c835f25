"""The one place vectors are L2-normalized, and the one exact top-k by inner product.

Everything downstream (the FAISS inner-product index, scores, combined queries) relies on the
normalization, so inner product equals cosine similarity. numpy only: queries import this without
torch or FAISS.
"""

from __future__ import annotations

import numpy as np


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` as C-contiguous float32 rows of unit L2 norm (zero rows stay zero)."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def top_k_inner_product(queries: np.ndarray, base: np.ndarray, ids: np.ndarray,
                        k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``base`` by inner product with each query: ``(scores, ids)``.

    One matrix product for every query (numpy's BLAS uses every core, where FAISS's flat scan runs
    one query per core). Equal scores come out later rows first, as FAISS orders them.
    """
    n = len(base)
    k = min(int(k), n)
    sims = queries @ base.T
    if k < n:
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(n), (len(queries), 1))
    order = np.empty_like(top)
    for row in range(len(top)):
        order[row] = top[row][np.lexsort((-top[row], -sims[row, top[row]]))]
    return np.take_along_axis(sims, order, axis=1).astype(np.float32), ids[order]
