"""What an index holds: counts, model, index type and its measured recall, sizes on disk."""

from __future__ import annotations

from .config import CATALOG_FILE, VECTORS_FILE
from .indexplan import expected_bytes
from .store import IndexStore


def index_info(store: IndexStore) -> dict:
    """Counts, model, index type and its recall, sizes on disk (``searchlib info``).

    While an indexer commits, ``vectors`` (read first) may lag ``images`` but never exceeds it.
    ``images`` counts items (a video's segments each count); ``videos`` and ``video_segments`` say
    how many of them are videos.
    """
    ident = store.identity
    cache = store.vector_cache() if ident is not None else None
    vectors = cache.get() if cache is not None else None
    names = [CATALOG_FILE, CATALOG_FILE + "-wal", VECTORS_FILE, "text_encoder.onnx"]
    sizes = {name: (store.directory / name).stat().st_size for name in names if (store.directory / name).exists()}
    catalog = store.catalog
    out: dict = {"index": str(store.directory), "catalog": catalog.describe(), "images": catalog.count(),
                 "model": ident.to_dict() if ident else None, "index_type_requested": store.index_type,
                 "vector_dtype": catalog.vector_dtype, "schema": catalog.schema_revision(),
                 "read_only": store.read_only, "bytes_on_disk": sizes}
    out["videos"], out["video_segments"] = catalog.video_counts()
    if vectors is None or cache is None:
        return {**out, "vectors": 0, "index_type": None, "exact": True, "recall_at_10": None, "nprobe": None,
                "dim": None, "memory": None}
    plan = cache.plan(vectors.ntotal)
    on_disk = not vectors.exact and hasattr(vectors, "delta")
    expected = plan.expected_bytes if plan.factory == vectors.index_type \
        else expected_bytes(vectors.index_type, vectors.ntotal, vectors.dim)
    return {**out, "vectors": vectors.ntotal, "index_type": vectors.index_type, "exact": vectors.exact,
            "recall_at_10": vectors.recall_at_10, "nprobe": vectors.nprobe or None, "dim": vectors.dim,
            "ef_search": getattr(vectors, "ef_search", None) or None,
            "rerank": cache.rerank() if on_disk else 0,
            "recall_at_10_rerank": getattr(vectors, "recall_at_10_rerank", None) if on_disk else None,
            "on_disk": on_disk,
            "memory": {"expected_bytes": expected, "budget_bytes": plan.budget_bytes, "rule": plan.reason,
                       "planned_type": plan.factory}}

