"""The batch indexer (installed as ``searchlib.indexer``): scan folders, decode images in worker
processes, embed, commit in batches.

``searchlib.index_folder`` is the entry point; names are imported lazily so that the CLI's
``--help`` does not load torch.
"""

from __future__ import annotations

__all__ = ["index_folder", "IndexOptions", "IndexReport", "Progress"]


def __getattr__(name: str):
    if name == "IndexOptions":
        from .options import IndexOptions

        return IndexOptions
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'searchlib.indexer' has no attribute {name!r}")
