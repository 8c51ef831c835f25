"""The one place vectors are L2-normalized.

Everything downstream (the FAISS inner-product index, scores, combined queries) relies on it, so
inner product equals cosine similarity. numpy only: queries import this without torch.
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
