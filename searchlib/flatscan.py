"""Exact search over a small flat index with numpy alone: a cold query need not import FAISS.

Importing FAISS takes ~0.3 s on two cores, a quarter of a cold ``searchlib search``. A ``Flat``
index saved by :meth:`searchlib.vectors.VectorIndex.save` is an ``IndexIDMap2`` around an
``IndexFlatIP``: two fixed headers, the float32 vectors and the int64 ids. :func:`read_flat_file`
reads that layout back (checking the stamp's checksum, as a FAISS load does), and
:class:`FlatScanIndex` searches it with one BLAS product, the same computation
:func:`~searchlib.vectormath.top_k_inner_product` does for an in-memory FAISS flat index. It builds the FAISS object
only if something asks for it (saving, a GPU copy).

Only files up to :data:`FLATSCAN_MAX_BYTES` are read this way: the whole file is read into memory,
where FAISS would map it (an exact search touches every page either way). On a machine with an
NVIDIA GPU, collections large enough to be searched there (:data:`~searchlib.vectors.GPU_MIN_VECTORS`)
go to FAISS, which makes the GPU copy.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from pathlib import Path

import numpy as np
import xxhash

from . import checked
from .vectormath import top_k_inner_product
from .vectors import GPU_MIN_VECTORS, Stamp, VectorIndex

log = logging.getLogger(__name__)

#: Flat files up to this size are searched with numpy (a 64 MiB file, 32k vectors of 512
#: dimensions, is read in ~15 ms; importing FAISS takes ~0.1-0.3 s). Larger ones go to FAISS: at
#: 100k vectors (200 MB) reading the file into fresh memory took 0.05-0.4 s on shared cores, as much
#: as FAISS's import and map, and a cold search was no faster on numpy, only less steady
#: (benchmarks/RESULTS.md).
FLATSCAN_MAX_BYTES = 64 << 20

_HEADER = struct.Struct("<4siqqqBi")  # fourcc, d, ntotal, dummy, dummy, is_trained, metric_type
_COUNT = struct.Struct("<Q")
_METRIC_INNER_PRODUCT = 0


def read_flat_file(path: Path, stamp: Stamp) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ids, vectors)`` of a saved flat index, or None when the file is not the flat index
    ``stamp`` describes (another layout, a wrong size or checksum): the caller loads it with FAISS,
    which rebuilds what it cannot read.

    The vectors are read straight into an aligned array (one copy, from the page cache), and the
    checksum is computed over the same bytes as they pass, unless this file, unchanged since, already
    matched it in an earlier run (:func:`searchlib.checked.known_match`).
    """
    if sys.byteorder != "little":  # the file is little-endian; let FAISS read it
        return None
    try:
        with open(path, "rb", buffering=0) as handle:
            st = os.fstat(handle.fileno())
            if stamp.file_size and st.st_size != stamp.file_size:
                return None
            trusted = not stamp.checksum or checked.known_match(path, stamp.checksum, st)
            head = _read_exactly(handle, 2 * _HEADER.size + _COUNT.size)
            outer = _HEADER.unpack_from(head, 0)
            inner = _HEADER.unpack_from(head, _HEADER.size)
            (floats,) = _COUNT.unpack_from(head, 2 * _HEADER.size)
            dim, count = inner[1], inner[2]
            if outer[0] != b"IxM2" or inner[0] != b"IxFI" or inner[6] != _METRIC_INNER_PRODUCT \
                    or (dim, count) != (stamp.dim, stamp.count) or outer[1:3] != inner[1:3] or floats != dim * count \
                    or len(head) + 4 * floats + _COUNT.size + 8 * count != st.st_size:
                return None
            vectors = np.empty((count, dim), dtype=np.float32)
            into, filled = memoryview(vectors.reshape(-1)).cast("B"), 0
            while filled < len(into):  # one read is enough for a regular file; a short one is allowed
                got = handle.readinto(into[filled:])
                if not got:
                    return None
                filled += got
            tail = _read_exactly(handle, _COUNT.size + 8 * count)
            if _COUNT.unpack_from(tail, 0)[0] != count or handle.read(1):
                return None
            if not trusted:
                digest = xxhash.xxh3_128()
                for part in (head, into, tail):
                    digest.update(part)
                if "xxh3_128:" + digest.hexdigest() != stamp.checksum:
                    return None
                checked.remember_match(path, stamp.checksum, st)
    except (OSError, struct.error, ValueError):
        return None
    ids = np.frombuffer(tail, dtype="<i8", count=count, offset=_COUNT.size).astype(np.int64)
    return ids, vectors


def _read_exactly(handle, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("the file ended early")
    return data


class FlatScanIndex(VectorIndex):
    """A ``Flat`` index held as numpy arrays (see the module's docstring).

    Args:
        dim: vector dimension.
        ids: catalog ids, one per row of ``vectors``.
        vectors: unit-norm float32 rows.
        stamp: the stamp of the file they were read from.
    """

    def __init__(self, dim: int, ids: np.ndarray, vectors: np.ndarray, stamp: Stamp | None = None):
        self.dim, self.index_type = dim, "Flat"
        self._ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(self._ids), dim)
        self._faiss = None
        self._gpu_index = None
        self.trained_count = stamp.trained_count if stamp else 0
        self.nprobe = stamp.nprobe if stamp else 0
        self.recall_at_10 = stamp.recall_at_10 if stamp else 1.0

    @classmethod
    def read(cls, path: Path, stamp: Stamp) -> FlatScanIndex | None:
        """The flat index saved at ``path`` if it is the one ``stamp`` describes, else None."""
        if stamp.index_type != "Flat" or stamp.kind != "memory" or not 0 < stamp.file_size <= FLATSCAN_MAX_BYTES:
            return None
        if stamp.count >= GPU_MIN_VECTORS and os.environ.get("SEARCHLIB_FAISS_GPU", "1") != "0":
            from .embedding import gpu_device_present

            if gpu_device_present():  # FAISS searches this many on the GPU
                return None
        found = read_flat_file(path, stamp)
        if found is None:
            log.info("%s is not a flat index this reader knows: loading it with FAISS", path)
            return None
        return cls(stamp.dim, found[0], found[1], stamp)

    @property
    def index(self):
        """The FAISS index of the same vectors, built on first use (saving, a GPU copy)."""
        if self._faiss is None:
            import faiss

            built = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            if len(self._ids):
                built.add_with_ids(self._vectors, self._ids)
            self._faiss = built
        return self._faiss

    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def copy(self) -> VectorIndex:
        """An in-memory FAISS copy: a process that goes on changing the index (a reader catching
        up, a writer) adds and removes through FAISS, as it did before."""
        clone = VectorIndex(self.dim, "Flat")
        clone.add(self._ids, self._vectors)
        clone.trained_count, clone.nprobe, clone.recall_at_10 = self.trained_count, self.nprobe, self.recall_at_10
        return clone

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._vectors = np.concatenate([self._vectors, vectors])
        self._faiss = None

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self._ids, self._vectors = self._ids[keep], self._vectors[keep]
            self._faiss = None
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if min(int(k), self.ntotal) <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return top_k_inner_product(queries, self._vectors, self._ids, k)

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        rows = np.isin(self._ids, np.asarray(allowed, dtype=np.int64))
        if min(int(k), int(rows.sum())) <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return top_k_inner_product(queries, self._vectors[rows], self._ids[rows], k)
