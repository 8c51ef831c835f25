"""The batch indexer: scan folders, decode images in worker processes, embed, commit in batches.

``from indexer import index_folder`` is the entry point; it is imported lazily so that the CLI's
``--help`` does not load torch.
"""

from __future__ import annotations

__all__ = ["index_folder", "IndexReport", "Progress"]


def __getattr__(name: str):
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
