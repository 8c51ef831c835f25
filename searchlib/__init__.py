"""searchlib — text-to-image semantic search over your photos, built on CLIP.

Quick use::

    import searchlib
    index = searchlib.open_index("~/.local/share/searchlib/index")
    hits = index.search("a dog on a beach", k=5)   # [Hit(rank, id, path, score, metadata), ...]

Names are imported lazily (PEP 562) so that ``import searchlib`` does not pay for torch or FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "open_index": "index",
    "Index": "index",
    "Hit": "query",
    "Filters": "filters",
    "parse_date": "filters",
    "Embedder": "embedding",
    "normalize": "embedding",
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
    "ImageDecodeError": "errors",
}

__all__ = [
    "ConfigError", "Embedder", "Filters", "Hit", "ImageDecodeError", "Index", "IndexBusyError", "IndexCorruptError",
    "IndexNotFoundError", "ModelError", "ModelIdentity", "ModelMismatchError", "ModelSpec",
    "ModelUnavailableError", "SearchlibError", "__version__", "embed_images", "embed_texts", "list_models",
    "normalize", "open_index", "parse_date", "parse_model_spec",
]

if TYPE_CHECKING:
    from .api import embed_images, embed_texts
    from .embedding import Embedder, normalize
    from .errors import (
        ConfigError,
        ImageDecodeError,
        IndexBusyError,
        IndexCorruptError,
        IndexNotFoundError,
        ModelError,
        ModelMismatchError,
        ModelUnavailableError,
        SearchlibError,
    )
    from .filters import Filters, parse_date
    from .index import Index, open_index
    from .models import ModelIdentity, ModelSpec, list_models, parse_model_spec
    from .query import Hit


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'searchlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
