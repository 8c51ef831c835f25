"""The FAISS inner-product index: a derived cache of the catalog's vectors.

FAISS ids are catalog primary keys (``IndexIDMap2`` around flat and graph indexes; IVF indexes store
ids natively). The file is written atomically (temp file + rename) next to a JSON stamp recording
the catalog generation and row count it was built from; a missing, stale or unreadable file is
rebuilt from the catalog, never trusted.

Index types (FAISS factory strings): ``Flat`` searches exactly; above
:data:`FLAT_MAX` vectors an IVF index is trained from the stored vectors, its ``nprobe`` chosen at
build time as the smallest that reaches :data:`RECALL_TARGET` recall@10 against exact search on a
sample of the collection. The measured recall is kept in the stamp and shown by ``searchlib info``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import checked
from .errors import ConfigError
from .indexplan import FLAT_MAX  # noqa: F401  (re-exported; the rule lives in indexplan)

log = logging.getLogger(__name__)

#: Recall@10 against exact search that IVF's nprobe must reach.
RECALL_TARGET = 0.95
#: Rebuild/retrain once the collection is this many times the size the index was trained for.
GROWTH_FACTOR = 2.0
#: Searches over at least this many vectors use the GPUs when faiss sees any (smaller ones are
#: faster on the CPU than the copy to the GPU is worth). ``SEARCHLIB_FAISS_GPU=0`` turns GPUs off.
GPU_MIN_VECTORS = 50_000


def gpu_count() -> int:
    """GPUs faiss can use (0 for CPU builds, machines without GPUs, or SEARCHLIB_FAISS_GPU=0)."""
    import faiss

    if os.environ.get("SEARCHLIB_FAISS_GPU", "1") == "0":
        return 0
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


@dataclass(frozen=True)
class Stamp:
    """What a saved FAISS file was built from, and how well it searches."""

    generation: int
    count: int
    dim: int
    index_type: str
    trained_count: int = 0
    nprobe: int = 0
    recall_at_10: float = 1.0
    file_size: int = 0
    checksum: str = ""  # of the FAISS file's bytes (xxh3)
    kind: str = "memory"  # memory | ondisk (see searchlib.ondisk)
    ef_search: int = 0
    recall_at_10_rerank: float = 0.0
    rerank: int = 0
    ivfdata: str = ""
    ivfdata_checksum: str = ""
    delta_checksum: str = ""
    tombstones_checksum: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def read(cls, path: Path) -> Stamp | None:
        """The stamp stored at ``path``, or None when missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None


#: FAISS files up to this size are checked against their stamp's checksum whenever they are
#: loaded (xxh3 hashes 250 MB in ~10 ms; reading the file costs more, and a memory-mapped IVF
#: index reads only the lists a query probes); larger ones by ``searchlib verify``, and every
#: search checks that scores are cosines (a flipped exponent bit shows as a score far from [-1, 1]).
CHECKSUM_ON_LOAD_MAX = 256 << 20


@contextmanager
def faiss_warnings_logged():
    """Route what faiss prints on stderr meanwhile (``WARNING clustering N points to K centroids``,
    from C++, past Python's ``sys.stderr``) into this module's log at INFO, so ``--quiet`` is quiet
    and ``-v`` shows them. Other lines written to fd 2 meanwhile (another thread's) go back out as
    they were. Nested use captures once."""
    if _capturing.locked():
        yield
        return
    with _capturing:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
        others = []
        for line in text.splitlines():
            if line.startswith("WARNING clustering") or line.startswith("WARNING:"):
                log.info("faiss: %s", line)
            else:
                others.append(line)
        if others:
            sys.stderr.write("\n".join(others) + "\n")


_capturing = threading.Lock()


def checksum(data) -> str:
    """The checksum stamped beside a derived file (xxh3, 128 bits: fast enough to check on load)."""
    import xxhash

    return "xxh3_128:" + xxhash.xxh3_128_hexdigest(memoryview(data))


def file_checksum(path: Path, chunk: int = 1 << 24) -> str:
    """:func:`checksum` of a file, read in chunks."""
    import xxhash

    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return "xxh3_128:" + digest.hexdigest()


def choose_index_type(count: int, dim: int, requested: str = "auto", budget: int | None = None) -> str:
    """The factory string for a collection of ``count`` vectors (see :func:`searchlib.indexplan.plan_index`)."""
    from .indexplan import plan_index

    return plan_index(count, dim, requested, budget).factory


def _is_ivf(index_type: str) -> bool:
    return index_type.upper().startswith("IVF")


def _atomic_write_bytes(path: Path, data) -> None:
    """Write ``data`` (any buffer) to ``path`` through a temp file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class VectorIndex:
    """An inner-product FAISS index whose ids are catalog row ids.

    Args:
        dim: vector dimension.
        index_type: FAISS factory string (``Flat``, ``IVF4096,Flat``, ``HNSW32``, ``IVF1024,PQ64``...).
    """

    def __init__(self, dim: int, index_type: str = "Flat", index=None, stamp: Stamp | None = None):
        import faiss

        self.dim = dim
        self.index_type = index_type
        if index is None:
            try:
                inner = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as e:
                raise ConfigError(f"invalid --index-type {index_type!r}: {str(e).splitlines()[0]}") from e
            index = inner if _is_ivf(index_type) else faiss.IndexIDMap2(inner)
        self.index = index
        self._gpu_index = None  # a GPU copy for searching, dropped on every change
        self.trained_count = stamp.trained_count if stamp else 0
        self.nprobe = stamp.nprobe if stamp else 0
        self.recall_at_10 = stamp.recall_at_10 if stamp else 1.0
        self._apply_nprobe()

    def _apply_nprobe(self) -> None:
        import faiss

        if self.nprobe and _is_ivf(self.index_type):
            faiss.extract_index_ivf(self.index).nprobe = self.nprobe

    @staticmethod
    def validate_type(index_type: str, dim: int = 512) -> None:
        """Fail early, with a clear message, on a factory string FAISS cannot build.

        Raises:
            ConfigError: not a valid FAISS factory string for ``dim``-d vectors.
        """
        import faiss

        try:
            faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid --index-type {index_type!r}: {str(e).splitlines()[0]}") from e

    def copy(self) -> VectorIndex:
        """An independent copy in memory that owns its data (of a memory-mapped index too).

        ``faiss.clone_index`` is not enough: the clone of a mapped index still views the mapped
        codes, and the first ``add`` on it aborts the whole process (faiss 1.15: "This operation
        cannot be performed on a viewed vector"). A serialize/deserialize round trip owns them.
        """
        import faiss

        owned = faiss.deserialize_index(faiss.serialize_index(self.index))
        clone = VectorIndex(self.dim, self.index_type, index=owned)
        clone.trained_count, clone.nprobe, clone.recall_at_10 = self.trained_count, self.nprobe, self.recall_at_10
        clone._apply_nprobe()
        return clone

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def exact(self) -> bool:
        return self.index_type == "Flat"

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, index_type: str = "Flat",
              fallback: bool = False) -> VectorIndex:
        """A new index holding ``vectors`` under ``ids`` (trained first if the type needs it).

        With ``fallback``, a type that cannot be trained on this few vectors becomes ``Flat``.
        """
        vi = cls(dim, index_type)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), dim)
        if not vi.index.is_trained:
            try:
                vi._train(vectors)
            except ConfigError as e:
                if not fallback:
                    raise
                # Too few vectors to train yet: search exactly until the collection has grown.
                log.warning("%s; searching exactly for now", e)
                return cls.build(dim, ids, vectors, "Flat")
        vi.add(ids, vectors)
        vi.trained_count = len(ids)
        if not vi.exact and len(ids):
            vi._tune(np.asarray(ids, dtype=np.int64), vectors)
        return vi

    def _train(self, vectors: np.ndarray) -> None:
        import faiss

        ivf = faiss.extract_index_ivf(self.index) if _is_ivf(self.index_type) else None
        need = max(39 * ivf.nlist, 1) if ivf is not None else 1
        if len(vectors) < need:
            raise ConfigError(f"index type {self.index_type} needs at least {need} vectors to train; "
                              f"the collection has {len(vectors)} (use --index-type Flat)")
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), 64 * need), replace=False)] \
            if ivf is not None else vectors
        log.info("training %s on %d vectors", self.index_type, len(sample))
        if gpu_count() > 0 and ivf is not None:
            # k-means on the GPUs, then the trained index comes back to the CPU for storage.
            gpu = faiss.index_cpu_to_all_gpus(self.index)
            with faiss_warnings_logged():
                gpu.train(np.ascontiguousarray(sample))
            self.index = faiss.index_gpu_to_cpu(gpu)
        else:
            with faiss_warnings_logged():
                self.index.train(np.ascontiguousarray(sample))

    def _tune(self, ids: np.ndarray, vectors: np.ndarray, queries: int = 200) -> None:
        """Pick the smallest nprobe reaching the recall target; measure recall@10 vs exact."""
        import faiss

        rng = np.random.default_rng(1)
        sample = vectors[rng.choice(len(vectors), min(queries, len(vectors)), replace=False)]
        # Queries near, not on, stored vectors: like a text query close to its images.
        noisy = sample + rng.normal(scale=0.5 / math.sqrt(self.dim), size=sample.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        exact = faiss.IndexFlatIP(self.dim)
        exact.add(vectors)
        k = min(10, len(vectors))
        _, truth = exact.search(noisy, k)
        truth_ids = ids[truth]
        candidates = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] if _is_ivf(self.index_type) else [0]
        for nprobe in candidates:
            if _is_ivf(self.index_type):
                ivf = faiss.extract_index_ivf(self.index)
                if nprobe > ivf.nlist:
                    break
                ivf.nprobe = nprobe
            _, got = self.index.search(noisy, k)
            recall = float(np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth_ids)]))
            self.nprobe, self.recall_at_10 = nprobe, recall
            if recall >= RECALL_TARGET:
                break
        log.info("%s: nprobe %d gives recall@10 %.3f", self.index_type, self.nprobe, self.recall_at_10)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.index.add_with_ids(vectors, ids)
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present.

        Raises:
            ConfigError: the index type cannot remove (HNSW); the caller rebuilds instead.
        """
        import faiss

        if len(ids) == 0:
            return 0
        self._gpu_index = None
        try:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))))
        except RuntimeError as e:
            raise ConfigError(f"{self.index_type} cannot remove vectors: {e}") from e

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product: ``(scores, ids)``, each ``(n_queries, k')`` with k' <= k."""
        k = min(int(k), self.ntotal)
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        if self.exact and len(queries) <= 64 and self._gpu_index is None and gpu_count() == 0:
            found = self._search_flat_blas(queries, k)
            if found is not None:
                return found
        return self._searcher().search(queries, k)

    def _search_flat_blas(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact search for up to 64 queries as one BLAS matrix product over the stored codes.

        FAISS scans a flat index one query at a time on one core; numpy's product uses every
        core (100k x 512: 5.8 ms instead of 12.7 ms here). Same results: both are exact. None when
        the codes are not float-aligned (a memory-mapped file), where numpy would not use BLAS.
        """
        import faiss

        inner = faiss.downcast_index(self.index.index)
        n = self.ntotal
        base = faiss.rev_swig_ptr(inner.get_xb(), n * self.dim)
        if not base.flags.aligned:
            return None
        from .vectormath import top_k_inner_product

        return top_k_inner_product(queries, base.reshape(n, self.dim), faiss.vector_to_array(self.index.id_map), k)

    def _searcher(self):
        """The GPU copy when GPUs are present and the index is large enough, else the index itself."""
        if self._gpu_index is None and self.ntotal >= GPU_MIN_VECTORS and gpu_count() > 0:
            import faiss

            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
                if self.nprobe and _is_ivf(self.index_type):
                    faiss.GpuParameterSpace().set_index_parameter(self._gpu_index, "nprobe", self.nprobe)
            except Exception as e:  # an index type without a GPU version: stay on the CPU
                log.info("searching %s on the CPU (%s)", self.index_type, e)
                self._gpu_index = self.index
        return self._gpu_index or self.index

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` among ``allowed`` ids only; exhaustive when the approximate pass finds too few."""
        import faiss

        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        k = min(int(k), len(allowed), self.ntotal)
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        selector = faiss.IDSelectorBatch(allowed)
        if _is_ivf(self.index_type):
            ivf = faiss.extract_index_ivf(self.index)
            params = faiss.SearchParametersIVF(sel=selector, nprobe=max(1, self.nprobe or ivf.nprobe))
            scores, ids = self.index.search(queries, k, params=params)
            if (ids < 0).any():  # the probed lists held too few matches: scan every list
                params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nlist)
                scores, ids = self.index.search(queries, k, params=params)
            return scores, ids
        try:
            return self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        except RuntimeError:  # index types without selector support (HNSW): exact over the subset
            vecs = np.stack([self.index.reconstruct(int(i)) for i in allowed])
            sims = queries @ vecs.T
            order = np.argsort(-sims, axis=1)[:, :k]
            return np.take_along_axis(sims, order, axis=1), allowed[order]

    def needs_rebuild(self, count: int, requested: str = "auto", budget: int | None = None) -> bool:
        """Whether a collection of ``count`` vectors has outgrown (or outshrunk) this index."""
        wanted = choose_index_type(count, self.dim, requested, budget)
        if wanted != self.index_type:
            # A requested type this index fell back from is retried once the collection has grown.
            return not (self.exact and count <= max(1, self.trained_count) * GROWTH_FACTOR
                        and requested not in ("auto", "", "Flat"))
        if self.exact or requested not in ("auto", ""):
            return False
        return count > GROWTH_FACTOR * max(1, self.trained_count) or count < self.trained_count / 4

    # -- persistence -------------------------------------------------------------------------
    def stamp(self, generation: int, file_size: int = 0, digest: str = "") -> Stamp:
        return Stamp(generation, self.ntotal, self.dim, self.index_type, self.trained_count, self.nprobe,
                     round(self.recall_at_10, 4), file_size, digest)

    def save(self, path: Path, stamp_path: Path, generation: int) -> Stamp:
        """Write the index and its stamp atomically (index first: a crash leaves a stale stamp).

        The caller holds the cache lock, so the two files always come from the same writer.
        """
        import faiss

        data = faiss.serialize_index(self.index)
        stamp = self.stamp(generation, int(data.nbytes), checksum(data))
        _atomic_write_bytes(path, data)
        _atomic_write_bytes(stamp_path, json.dumps(stamp.to_dict()).encode())
        return stamp

    @classmethod
    def load(cls, path: Path, stamp: Stamp, writable: bool = True, verify: bool | None = None) -> VectorIndex | None:
        """The index saved at ``path`` if it is the one ``stamp`` describes, else None (caller rebuilds).

        Read-only loads memory-map the file where FAISS supports it, so a cold query reads only
        the pages it needs. ``verify`` checks the checksum (default: for files up to
        :data:`CHECKSUM_ON_LOAD_MAX`).
        """
        import faiss

        try:
            size = path.stat().st_size
        except OSError:
            return None
        if stamp.file_size and size != stamp.file_size:
            log.warning("vector index %s has %d bytes, its stamp says %d: rebuilding", path, size, stamp.file_size)
            return None
        if verify is None:
            verify = size <= CHECKSUM_ON_LOAD_MAX
        index = None
        if verify and stamp.checksum:
            # Checked in chunks, then read (or mapped) by FAISS: reading the file into one buffer
            # and deserializing it held two copies at once (+400 MB RSS at 100k vectors) and lost
            # the memory map. The second pass reads from the page cache.
            try:
                # (Not hashed again when unchanged since it last matched: searchlib/checked.py.)
                if not checked.matches(path, stamp.checksum, file_checksum):
                    log.warning("vector index %s does not match its checksum (corrupt): rebuilding", path)
                    return None
            except OSError:
                return None
        read_only = faiss.IO_FLAG_READ_ONLY
        # Flat codes and IVF lists (IO_FLAG_MMAP_IFC) are mapped, not copied: a
        # 200 MB flat index opens in 20 ms instead of 110 ms.
        mmap_codes = getattr(faiss, "IO_FLAG_MMAP_IFC", None)  # older faiss: no IFC flag, read it all
        # Not IO_FLAG_MMAP alone: it gives IVF indexes on-disk lists tied to the path, which can
        # neither be cloned nor serialized into an independent copy when a reader catches up.
        flags = [0] if writable or mmap_codes is None else [mmap_codes | read_only, 0]
        for flag in flags:
            try:
                index = faiss.read_index(str(path), flag)
                break
            except Exception as e:  # corrupt or truncated file (or no mmap for this type)
                log.info("reading %s with flags %d failed: %s", path, flag, e)
        if index is None:
            log.warning("vector index %s unreadable: rebuilding", path)
            return None
        if index.ntotal != stamp.count or index.d != stamp.dim:
            return None
        return cls(stamp.dim, stamp.index_type, index=index, stamp=stamp)
