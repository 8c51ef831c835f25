"""Defaults and locations that the rest of searchlib reads from one place."""

from __future__ import annotations

import os
from pathlib import Path

#: The model used when a user names none. ViT-B-32 trained on LAION-2B is the usual speed/quality
#: compromise: ~23k img/s on an H200, ~18 img/s on two CPU cores, and 66.8 Flickr30k R@1.
DEFAULT_MODEL = "ViT-B-32/laion2b_s34b_b79k"

#: Environment variable naming the index directory (the CLI's ``--index``).
INDEX_ENV = "SEARCHLIB_INDEX"
#: Environment variable naming a catalog database URL (the CLI's ``--catalog``).
CATALOG_ENV = "SEARCHLIB_CATALOG"

#: Index directory file names.
CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
VECTORS_STAMP_FILE = "vectors.stamp.json"
LOCK_FILE = "index.lock"
THUMBNAILS_DIR = "thumbnails"


def default_index_dir() -> Path:
    """The per-user index directory: ``$SEARCHLIB_INDEX`` or the platform's user data dir."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("searchlib", appauthor=False)) / "index"


def cache_dir() -> Path:
    """Where per-model exports and facts are kept (``$SEARCHLIB_CACHE`` or the user cache dir)."""
    env = os.environ.get("SEARCHLIB_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("searchlib", appauthor=False))
