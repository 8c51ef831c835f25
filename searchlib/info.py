"""What an index holds: counts, model, index type and its measured recall, sizes on disk."""

from __future__ import annotations

from pathlib import Path

from .config import CATALOG_FILE, VECTORS_FILE
from .indexplan import expected_bytes
from .models import ModelIdentity
from .store import IndexStore


def text_tower(directory: Path, identity: ModelIdentity, device: str = "cpu") -> dict:
    """Which text tower answers queries here (``int8``, ``fp32`` or ``model``: no usable export, or
    queries run on ``device`` CUDA with the full model), over which tokens (``tokens``: ``own``,
    each text's own; ``context``, padded to the context length; None for the full model), and the
    int8 tower's fidelity gate as last run (None when it never ran), without loading either."""
    from .textenc import export_is_current, read_checksum, read_export_note
    from .textquant import int8_for_queries, read_int8_note

    if not export_is_current(directory, identity):
        return {"in_use": "model", "tokens": None, "int8_gate": None}
    note = read_int8_note(directory)
    gate = note["gate"] if note is not None and note.get("fp32_checksum") == read_checksum(directory) else None
    in_use = "int8" if int8_for_queries(directory, str(read_checksum(directory))) else "fp32"
    tokens = "own" if (read_export_note(directory, identity) or {}).get("trim") else "context"
    if device.startswith("cuda"):  # as IndexModel does: on a GPU the full model answers texts
        in_use, tokens = "model", None
    return {"in_use": in_use, "tokens": tokens, "int8_gate": gate}


def index_info(store: IndexStore) -> dict:
    """Counts, model, index type and its recall, sizes on disk (``searchlib info``).

    While an indexer commits, ``vectors`` (read first) may lag ``images`` but never exceeds it.
    ``images`` counts items (a video's segments each count); ``videos`` and ``video_segments`` say
    how many of them are videos. ``text_tower`` says which text tower answers queries and how
    the int8 tower's fidelity gate went (:func:`text_tower`).
    """
    ident = store.identity
    cache = store.vector_cache() if ident is not None else None
    vectors = cache.get() if cache is not None else None
    names = [CATALOG_FILE, CATALOG_FILE + "-wal", VECTORS_FILE, "text_encoder.onnx", "text_encoder.weights",
             "text_encoder.int8.onnx", "text_encoder.int8.weights"]
    sizes = {name: (store.directory / name).stat().st_size for name in names if (store.directory / name).exists()}
    catalog = store.catalog
    out: dict = {"index": str(store.directory), "catalog": catalog.describe(), "images": catalog.count(),
                 "model": ident.to_dict() if ident else None, "index_type_requested": store.index_type,
                 "vector_dtype": catalog.vector_dtype, "schema": catalog.schema_revision(),
                 "read_only": store.read_only, "bytes_on_disk": sizes,
                 "text_tower": text_tower(store.directory, ident, store.model.device) if ident is not None else None}
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

