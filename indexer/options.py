"""The options of an index run, in one frozen record that the CLI builds and every stage reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from searchlib.errors import ConfigError
from searchlib.media import PAIR_MODES

#: Commit at least this often (seconds): a killed run loses no more than this much work.
COMMIT_SECONDS = 5.0

#: Where JPEGs are decoded: ``cpu``: in the worker processes only; ``device``: every JPEG the
#: device decoder handles goes there (nvJPEG on CUDA; on a CPU device, torchvision's decoder in
#: this process); ``split``: both at once, shared in proportion to their measured speed
#: (:mod:`searchlib.indexer.split`); ``auto``: ``split`` when the model runs on CUDA, else ``cpu``.
JPEG_DECODERS = ("auto", "cpu", "device", "split")


@dataclass(frozen=True)
class IndexOptions:
    """How to index.

    Attributes:
        model: model spec; default: the index's model, or :data:`searchlib.config.DEFAULT_MODEL`
            for a new index.
        checkpoint: local weights file for ``model`` (an architecture name).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per forward pass (default 256 on CUDA, 32 on CPU).
        workers: decode processes (default: one per core; 0 decodes in this process).
        max_megapixels: larger images are reported as failures instead of decoded; decoded bytes
            are held to what an RGB image of this size takes.
        exclude: glob patterns of paths to skip.
        include_hidden: index dot-files and dot-directories too.
        follow_symlinks: follow symbolic links.
        retry_failed: try again files that failed before and have not changed since.
        commit_seconds: commit at least this often; a killed run loses at most this much work.
        index_type: ``auto`` (by size and memory budget) or a FAISS factory string; remembered by
            the index. None keeps the index's setting.
        backend: how the image tower runs (``auto``, ``torch``, ``bf16``, ``onnx``, ``onnx-int8``).
        jpeg_decoder: where JPEGs are decoded (:data:`JPEG_DECODERS`).
        catalog: a database URL for the catalog (default: SQLite in the index directory).
        ray: embed on Ray: ``"local"`` starts a local Ray, anything else is a cluster address
            (which needs a PostgreSQL catalog). None: the local pipeline.
        max_index_memory: memory budget for the vector index (``"2GiB"`` or bytes); it picks the
            index type (:mod:`searchlib.indexplan`). Remembered by the index; None keeps it.
        rerank: candidates re-ranked exactly from the stored vectors on compressed indexes.
        vector_dtype: ``float32`` or ``float16`` storage of vectors in a new catalog.
        read_text: read the words in images (OCR, :mod:`searchlib.ocr`) so that queries and
            ``Filters(text=...)`` find them. Remembered by the index; None keeps its choice (off
            for a new index: on two CPU cores reading costs several times the embedding).
        raw_pairs: for a RAW file with a JPEG (or HEIF) of the same name beside it: ``jpeg`` indexes
            the JPEG only and shows the RAW as its sibling on hits; ``both`` indexes both.
    """

    model: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    max_megapixels: float | None = 178.0
    exclude: tuple[str, ...] = ()
    include_hidden: bool = False
    follow_symlinks: bool = False
    retry_failed: bool = False
    commit_seconds: float = COMMIT_SECONDS
    index_type: str | None = None
    backend: str = "auto"
    jpeg_decoder: str = "auto"
    catalog: str | None = None
    ray: str | None = None
    max_index_memory: str | int | None = None
    rerank: int | None = None
    vector_dtype: str | None = None
    read_text: bool | None = None
    raw_pairs: str = "jpeg"

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(self.exclude or ()))
        object.__setattr__(self, "jpeg_decoder", (self.jpeg_decoder or "auto").lower())
        object.__setattr__(self, "raw_pairs", (self.raw_pairs or "jpeg").lower())
        if self.raw_pairs not in PAIR_MODES:
            raise ConfigError(f"--raw-pairs must be one of {', '.join(PAIR_MODES)}, not {self.raw_pairs!r}")
        if self.jpeg_decoder not in JPEG_DECODERS:
            raise ConfigError(f"unknown JPEG decoder {self.jpeg_decoder!r}; use one of {', '.join(JPEG_DECODERS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise ConfigError("--workers must be 0 or more")
        if self.max_megapixels is not None and not self.max_megapixels > 0:
            raise ConfigError("--max-megapixels must be more than 0")
        if self.max_index_memory is not None:
            from searchlib.indexplan import parse_size

            object.__setattr__(self, "max_index_memory", parse_size(self.max_index_memory))
        if self.vector_dtype not in (None, "float32", "float16"):
            raise ConfigError(f"--vector-dtype must be float32 or float16, not {self.vector_dtype!r}")
        if self.ray not in (None, "local") and (self.catalog is None or self.catalog.startswith("sqlite")
                                                or "://" not in self.catalog):
            raise ConfigError("indexing on a Ray cluster needs a PostgreSQL catalog: give --catalog "
                              "postgresql://... (SQLite works with a local Ray: --ray alone)")

    @property
    def max_pixels(self) -> int | None:
        return int(self.max_megapixels * 1e6) if self.max_megapixels else None

    @property
    def worker_count(self) -> int:
        from .pipeline import default_workers

        return default_workers() if self.workers is None else self.workers

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


def resolve_roots(paths) -> list[str]:
    """Absolute, existing roots with duplicates and roots inside other roots removed.

    A file or folder given twice, or inside another folder given, would be scanned twice.
    """
    if not paths:
        raise ConfigError("no PATH given; name the folders or files to index")
    roots: list[str] = []
    for p in paths:
        root = os.path.abspath(os.path.expanduser(os.fspath(p)))
        if not os.path.lexists(root):
            raise ConfigError(f"path not found: {root}")
        roots.append(root)
    unique = sorted(set(roots))
    folders = [r for r in unique if os.path.isdir(r)]
    return [r for r in unique if not any(r != f and r.startswith(f.rstrip(os.sep) + os.sep) for f in folders)]
