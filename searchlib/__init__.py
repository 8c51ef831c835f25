"""searchlib — text-to-image semantic search over your photos, built on CLIP.

Quick use::

    import searchlib
    searchlib.index_folder("my-index", "~/Pictures")
    with searchlib.open_index("my-index") as index:
        hits = index.search("a dog on a beach", k=5)   # [Hit(rank, id, path, score, metadata), ...]

Names are imported lazily (PEP 562) so that ``import searchlib`` does not pay for torch or FAISS.
``index_folder`` and its options come from the indexer (``searchlib.indexer``), which is built on
this library; they are re-exported here so that the public API is one import.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

if "numpy" not in sys.modules:
    # OpenBLAS's idle threads busy-wait for ~0.1 s after a matrix product (an exact search), taking
    # the cores the text encoder needs next: a warm query took 84 ms instead of 42 ms on 2 cores.
    # The setting only counts before numpy (and its OpenBLAS) loads, and only shortens the wait.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"

# The library logs and never prints: without this, Python's last-resort handler would write
# searchlib's warnings to stderr in applications that configure no logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "open_index": "index",
    "Index": "index",
    "IndexWriter": "index",
    "index_folder": "indexer.run",
    "IndexOptions": "indexer.options",
    "IndexReport": "indexer.run",
    "Progress": "indexer.run",
    "watch": "indexer.watch",
    "WatchBatch": "indexer.watch",
    "Hit": "query",
    "QueryTerm": "query",
    "ImageMetadata": "records",
    "StoredImage": "records",
    "Filters": "filters",
    "parse_date": "filters",
    "Embedder": "embedding",
    "normalize": "vectormath",
    "ModelSpec": "models",
    "ModelIdentity": "models",
    "parse_model_spec": "models",
    "list_models": "models",
    "embed_texts": "api",
    "embed_images": "api",
    "SearchlibError": "errors",
    "ConfigError": "errors",
    "ModelError": "errors",
    "ModelUnavailableError": "errors",
    "ModelMismatchError": "errors",
    "IndexNotFoundError": "errors",
    "IndexCorruptError": "errors",
    "IndexBusyError": "errors",
    "DecodeBusyError": "errors",
    "ImageDecodeError": "errors",
    "IndexReadOnlyError": "errors",
    "StorageFullError": "errors",
    "QueryError": "errors",
    "ImageNotFoundError": "errors",
}

__all__ = [
    "ConfigError", "DecodeBusyError", "Embedder", "Filters", "Hit", "ImageDecodeError", "ImageMetadata",
    "ImageNotFoundError",
    "Index", "IndexBusyError", "IndexCorruptError", "IndexNotFoundError", "IndexOptions",
    "IndexReadOnlyError", "IndexReport", "IndexWriter", "ModelError", "ModelIdentity", "ModelMismatchError",
    "ModelSpec", "ModelUnavailableError", "Progress", "QueryError", "QueryTerm", "SearchlibError",
    "StorageFullError", "StoredImage", "__version__", "embed_images", "embed_texts", "index_folder",
    "list_models", "normalize", "open_index", "parse_date", "parse_model_spec", "watch", "WatchBatch",
]

if TYPE_CHECKING:
    from .api import embed_images, embed_texts
    from .embedding import Embedder
    from .errors import (
        ConfigError,
        DecodeBusyError,
        ImageDecodeError,
        ImageNotFoundError,
        IndexBusyError,
        IndexCorruptError,
        IndexNotFoundError,
        IndexReadOnlyError,
        ModelError,
        ModelMismatchError,
        ModelUnavailableError,
        QueryError,
        SearchlibError,
        StorageFullError,
    )
    from .filters import Filters, parse_date
    from .index import Index, IndexWriter, open_index
    from .indexer.options import IndexOptions
    from .indexer.run import IndexReport, Progress, index_folder
    from .indexer.watch import WatchBatch, watch
    from .models import ModelIdentity, ModelSpec, list_models, parse_model_spec
    from .query import Hit, QueryTerm
    from .records import ImageMetadata, StoredImage
    from .vectormath import normalize


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'searchlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
