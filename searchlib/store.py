"""The parts one index is made of, shared by its face, its writer and its searcher.

An index is a catalog (the truth: rows and vectors), this machine's FAISS cache of the catalog's
vectors, and the model the vectors come from. :class:`IndexStore` holds the three and the facts
they share (the directory, whether it may be written, the model identity), so that
:class:`~searchlib.index.Index`, :class:`~searchlib.writer.IndexWriter` and
:class:`~searchlib.search.Searcher` work through one public object instead of each other's
private members.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .encoders import IndexModel
from .errors import IndexNotFoundError
from .models import ModelIdentity
from .vectorcache import VectorCache

if TYPE_CHECKING:
    from .catalog import Catalog, QuickCatalog


class IndexStore:
    """The catalog, the vector cache and the model of one index.

    Args:
        directory: the index directory (with a catalog URL: this machine's cache directory).
        catalog: the open catalog.
        device: where the model runs when one is needed.
    """

    def __init__(self, directory: Path, catalog: Catalog | QuickCatalog, device: str = "auto"):
        self.directory = directory
        self.catalog = catalog
        self.device = device
        self.read_only = catalog.read_only or not os.access(directory, os.W_OK)
        self._identity = catalog.model_identity()
        self.model = IndexModel(directory, self._identity, device, writable=not self.read_only)
        self._cache: VectorCache | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> ModelIdentity | None:
        """The model the vectors come from (None for an empty, new index)."""
        if self._identity is None:
            self._identity = self.catalog.model_identity()
            self.model.identity = self._identity
        return self._identity

    def forget_identity(self) -> None:
        """Read the identity again on next use (the first batch of a new index records it)."""
        self._identity = None

    @property
    def index_type(self) -> str:
        """The requested FAISS index type: ``auto`` (by collection size) or a factory string."""
        return self.catalog.get_setting("index_type", "auto") or "auto"

    def vector_cache(self) -> VectorCache:
        """This machine's FAISS cache of the catalog's vectors (made on first use).

        Raises:
            IndexNotFoundError: the index holds no vectors yet (no model recorded).
        """
        ident = self.identity
        if ident is None:
            raise IndexNotFoundError(f"the index at {self.directory} is empty; index some images first")
        with self._lock:
            if self._cache is None:
                self._cache = VectorCache(self.directory, self.catalog, ident.dim, writable=not self.read_only)
            return self._cache

    def relevance_background(self, generation: int | None):
        """Relevance's background: a sample of the index's vectors as of ``generation``
        (``numpy`` rows), kept in the index directory (:data:`searchlib.relevance.BACKGROUND_FILE`)
        so that a search in a new process reads one small file instead of drawing it from the
        catalog."""
        from .relevance import BACKGROUND_SAMPLE, background_key, load_background, save_background

        identity = self.identity
        key = background_key(generation, identity.to_dict()) if generation is not None and identity else None
        if key is not None:
            kept = load_background(self.directory, key)
            if kept is not None:
                return kept
        background = self.catalog.sample_vectors(BACKGROUND_SAMPLE, seed=0, distinct=False)
        if key is not None and not self.read_only and len(background):
            save_background(self.directory, key, background)
        return background

    def close(self) -> None:
        self.model.query_cache.close()
        self.catalog.close()
