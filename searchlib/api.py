"""Module-level helpers for embedding without an index (models are cached per spec and device)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .embedding import Embedder
from .models import parse_model_spec


@lru_cache(maxsize=4)
def _embedder(model: str | None, checkpoint: str | None, device: str) -> Embedder:
    return Embedder(parse_model_spec(model, checkpoint), device=device)


def embed_texts(texts: Sequence[str], model: str | None = None, checkpoint: str | None = None,
                device: str = "auto") -> np.ndarray:
    """Embed texts with a model spec (default :data:`searchlib.config.DEFAULT_MODEL`).

    Returns:
        ``(len(texts), dim)`` float32 rows of unit norm.
    """
    return _embedder(model, checkpoint, device).embed_texts(list(texts))


def embed_images(images: Sequence[str | os.PathLike | bytes | Any], model: str | None = None,
                 checkpoint: str | None = None, device: str = "auto") -> np.ndarray:
    """Embed images (file paths, encoded bytes or ``PIL.Image`` objects) with a model spec.

    Returns:
        ``(len(images), dim)`` float32 rows of unit norm.

    Raises:
        ImageDecodeError: an image cannot be read, or is larger than the decode guard allows.
    """
    return _embedder(model, checkpoint, device).embed_images(list(images))
