"""Big collections: an OPQ + IVF-HNSW + PQ index whose inverted lists live on disk.

Built from the catalog in one streaming pass after training on a sample: each chunk of vectors
becomes a shard (a copy of the trained, empty index holding that chunk's codes, written to a
file), and the shards are merged into one memory-mapped ``.ivfdata`` file without ever holding
all codes in memory (faiss's ``merge_ondisk``). While a chunk is encoded (faiss uses every core
and releases the GIL), the next is read from the catalog on another thread. The same pass computes
the exact top-10 of a held-out sample of queries, against which ``nprobe`` (and the HNSW
quantizer's ``efSearch``) are tuned at the end.

The base built this way is never written again: readers map it safely while a writer works.
Vectors added later are encoded with the same trained OPQ rotation, coarse centroids and PQ
codebooks into a *delta* of the same lists (in memory, saved beside the base); removed or changed
ids are hidden from the base by *tombstones*. Searches merge base and delta. When the collection
has doubled (or halved) since the build, the next writer rebuilds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import checked
from .locks import build_folder, remove_stale_build_folders
from .vectors import (
    CHECKSUM_ON_LOAD_MAX,
    GROWTH_FACTOR,
    Stamp,
    _atomic_write_bytes,
    checksum,
    faiss_warnings_logged,
    file_checksum,
)

log = logging.getLogger(__name__)

#: Recall@10 (against exact search) that tuning must reach, after re-ranking when there is one.
RECALL_TARGET = 0.90
#: Candidates re-ranked exactly from the stored vectors by default.
DEFAULT_RERANK = 100
#: Held-out queries used to tune and measure recall.
TUNING_QUERIES = 200
DELTA_FILE = "vectors.delta.faiss"
TOMBSTONES_FILE = "vectors.tombstones.npy"
IDS_FILE = "vectors.ids.npy"


def _load_flags():
    import faiss

    # The lists are mapped by OnDiskInvertedLists itself; read-only, found beside the index file
    # (so a moved index directory still opens). IO_FLAG_MMAP on top crashes faiss 1.15 here.
    return faiss.IO_FLAG_READ_ONLY | faiss.IO_FLAG_ONDISK_SAME_DIR


@contextmanager
def _quiet_stdout():
    """faiss's on-disk lists print notes on stdout with printf; a library must not (``--json``
    output would be broken), so fd 1 points at /dev/null for the call."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _read(path: Path):
    import faiss

    with _quiet_stdout():  # "IO_FLAG_ONDISK_SAME_DIR: updating ondisk filename ..."
        return faiss.read_index(str(path), _load_flags())


def _lists_file(directory: Path, base, stamp: Stamp) -> tuple[Path, int]:
    """The lists file the header refers to (in ``directory``) and the size the header maps."""
    import faiss

    lists = faiss.downcast_InvertedLists(_ivf(base).invlists)
    name = stamp.ivfdata or os.path.basename(lists.filename)
    return directory / name, int(lists.totsize)


def lists_problem(directory: Path, base, stamp: Stamp, full: bool = True) -> str | None:
    """What is wrong with the memory-mapped lists file of ``base`` (None when it is sound).

    The header maps ``totsize`` bytes of the file: a shorter file would raise SIGBUS in the first
    search that reads past its end, so the size is always checked (cheap, before any search). The
    bytes are checked against the stamp's checksum when ``full`` (``verify``) or when the file is
    small enough to hash on every load (:data:`~searchlib.vectors.CHECKSUM_ON_LOAD_MAX`): a file
    zeroed at the same size otherwise loses images silently.
    """
    path, expected = _lists_file(directory, base, stamp)
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if size != expected:
        return f"holds {size} bytes where the index maps {expected}"
    if full:
        if stamp.ivfdata_checksum and file_checksum(path) != stamp.ivfdata_checksum:
            return "does not match its checksum"
    elif size <= CHECKSUM_ON_LOAD_MAX and stamp.ivfdata_checksum \
            and not checked.matches(path, stamp.ivfdata_checksum, file_checksum):
        return "does not match its checksum"
    return None


def files_problem(directory: Path, path: Path, stamp: Stamp) -> str | None:
    """What is wrong with the files of the on-disk index ``stamp`` describes (``verify``'s full
    check: every byte of the header, the lists, the delta and the tombstones); None when sound."""
    if file_checksum(path) != stamp.checksum:
        return "the index header does not match its checksum"
    for name, expected in ((DELTA_FILE, stamp.delta_checksum), (TOMBSTONES_FILE, stamp.tombstones_checksum)):
        try:
            if file_checksum(directory / name) != expected:
                return f"{name} does not match its checksum"
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
    if stamp.ivfdata and not (directory / stamp.ivfdata).is_file():
        return f"the lists file {stamp.ivfdata} is missing"
    try:
        base = _read(path)
    except Exception as e:  # faiss raises RuntimeError for an unreadable lists file
        return f"the index cannot be opened ({str(e).strip().splitlines()[-1] if str(e).strip() else e})"
    problem = lists_problem(directory, base, stamp, full=True)
    return f"the lists file {problem}" if problem else None


def _cheaper_training(index) -> None:
    """Training settings measured to cost a fraction of faiss's defaults (see benchmarks/RESULTS.md):
    10 k-means iterations instead of 25 (they converge by then), no polysemous training (its codes
    reordering serves a search mode searchlib does not use; it took 6x the PQ training itself),
    OPQ with 10 iterations on at most 32k vectors instead of 50 on 65k (~200 s -> ~23 s at 512-d)."""
    import faiss

    ivf = faiss.downcast_index(_ivf(index))
    ivf.cp.niter = 10
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
        ivf.pq.cp.niter = 10
        ivf.pq.cp.max_points_per_centroid = 128
    outer = faiss.downcast_index(index)
    if isinstance(outer, faiss.IndexPreTransform):
        for i in range(outer.chain.size()):
            transform = faiss.downcast_VectorTransform(outer.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = 10
                transform.max_train_points = 32768


def _ivf(index):
    import faiss

    return faiss.extract_index_ivf(index)


def _quantizer_hnsw(index):
    import faiss

    q = faiss.downcast_index(_ivf(index).quantizer)
    return q.hnsw if hasattr(q, "hnsw") else None


def _search_params(index, nprobe: int, ef: int, sel=None):
    """Search parameters reaching through the OPQ transform to the IVF (and its HNSW quantizer)."""
    import faiss

    ivf_params = faiss.SearchParametersIVF(nprobe=nprobe)
    if sel is not None:
        ivf_params.sel = sel
    if _quantizer_hnsw(index) is not None:
        ivf_params.quantizer_params = faiss.SearchParametersHNSW(efSearch=ef)
    if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
        params = faiss.SearchParametersPreTransform(index_params=ivf_params)
        params._keep = ivf_params  # the SWIG objects must outlive the search
        return params
    return ivf_params


def _merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    out_ids[~np.isfinite(out_scores)] = -1
    return out_scores, out_ids


class OnDiskIndex:
    """A built base (memory-mapped lists), a delta of later additions and tombstones for the base.

    It answers the same calls as :class:`~searchlib.vectors.VectorIndex` (``search``,
    ``search_subset``, ``add``, ``remove``, ``save``...), so the vector cache uses either alike.
    """

    exact = False

    def __init__(self, directory: Path, base, delta, base_ids: np.ndarray, tombstones: np.ndarray, stamp: Stamp):
        self.directory = directory
        self.base, self.delta = base, delta
        self.base_ids = base_ids  # sorted ids in the base (memory-mapped)
        self.tombstones = tombstones  # sorted base ids hidden from searches
        self.dim, self.index_type = stamp.dim, stamp.index_type
        self.trained_count, self.nprobe, self.ef_search = stamp.trained_count, stamp.nprobe, stamp.ef_search
        self.recall_at_10, self.recall_at_10_rerank = stamp.recall_at_10, stamp.recall_at_10_rerank
        self.rerank = stamp.rerank
        self._stamp = stamp
        self._selector_cache = None

    # -- size --------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(len(self.base_ids) - len(self.tombstones) + self.delta.ntotal)

    @property
    def nlist(self) -> int:
        return int(_ivf(self.base).nlist)

    def needs_rebuild(self, count: int, requested: str = "auto", budget: int | None = None) -> bool:
        """Rebuild when another type is asked for or now fits the budget, or when the collection has
        doubled (or shrunk to a quarter) since the build: until then, additions go into the
        existing lists (the delta) with no retraining."""
        from .indexplan import plan_index

        if requested not in ("auto", "") and requested != self.index_type:
            return True
        if not plan_index(count, self.dim, requested, budget).on_disk:
            return True
        return count > GROWTH_FACTOR * max(1, self.trained_count) or count < self.trained_count / 4

    # -- searching ---------------------------------------------------------------------------
    def _base_selector(self, allowed: np.ndarray | None = None):
        import faiss

        if allowed is not None:
            keep = allowed if not len(self.tombstones) else np.setdiff1d(allowed, self.tombstones, assume_unique=True)
            return faiss.IDSelectorBatch(np.ascontiguousarray(keep, dtype=np.int64)), keep
        if not len(self.tombstones):
            return None, None
        if self._selector_cache is None:
            hidden = faiss.IDSelectorBatch(np.ascontiguousarray(self.tombstones, dtype=np.int64))
            self._selector_cache = (faiss.IDSelectorNot(hidden), hidden)
        return self._selector_cache[0], self._selector_cache

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by approximate inner product over base (minus tombstones) and delta."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(int(k), max(1, self.ntotal)))
        nprobe = nprobe or self.nprobe or 1
        sel, _keep = self._base_selector()
        parts = [self.base.search(queries, k, params=_search_params(self.base, nprobe, self.ef_search, sel))]
        if self.delta.ntotal:
            parts.append(self.delta.search(queries, k, params=_search_params(self.delta, nprobe, self.ef_search)))
        return _merge_topk(parts, k)

    def search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` among ``allowed`` ids; every list is scanned when the probed ones hold too few."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        allowed = np.unique(np.asarray(allowed, dtype=np.int64))
        k = max(1, min(int(k), len(allowed)))
        for nprobe in (self.nprobe or 1, self.nlist):
            sel, keep = self._base_selector(allowed)
            parts = [self.base.search(queries, k, params=_search_params(self.base, nprobe, max(self.ef_search, nprobe),
                                                                       sel))]
            if self.delta.ntotal:
                delta_sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed))
                parts.append(self.delta.search(queries, k, params=_search_params(self.delta, nprobe,
                                                                                 max(self.ef_search, nprobe),
                                                                                 delta_sel)))
            scores, ids = _merge_topk(parts, k)
            if not (ids < 0).any():
                break
        return scores, ids

    # -- changing ----------------------------------------------------------------------------
    def copy(self) -> OnDiskIndex:
        """A copy sharing the (immutable) base, with its own delta and tombstones."""
        import faiss

        return OnDiskIndex(self.directory, self.base, faiss.clone_index(self.delta), self.base_ids,
                           self.tombstones.copy(), self._current_stamp())

    def _in_base(self, ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.base_ids, ids)
        pos = np.minimum(pos, len(self.base_ids) - 1)
        return ids[(len(self.base_ids) > 0) & (self.base_ids[pos] == ids)]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self.delta.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        import faiss

        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(ids):
            return 0
        hidden = np.setdiff1d(self._in_base(ids), self.tombstones, assume_unique=True)
        if len(hidden):
            self.tombstones = np.union1d(self.tombstones, hidden)
            self._selector_cache = None
        removed = int(self.delta.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids))))
        return int(len(hidden)) + removed

    # -- persistence -------------------------------------------------------------------------
    def _current_stamp(self) -> Stamp:
        return replace(self._stamp, count=self.ntotal, nprobe=self.nprobe, ef_search=self.ef_search)

    def stamp(self, generation: int, file_size: int = 0, digest: str = "") -> Stamp:
        return replace(self._current_stamp(), generation=generation)

    def save(self, path: Path, stamp_path: Path, generation: int) -> Stamp:
        """Write the delta and the tombstones (the base is written once, when built), then the stamp."""
        import faiss

        delta = faiss.serialize_index(self.delta)
        _atomic_write_bytes(self.directory / DELTA_FILE, delta)
        tomb = _npy_bytes(self.tombstones)
        _atomic_write_bytes(self.directory / TOMBSTONES_FILE, tomb)
        stamp = replace(self.stamp(generation), delta_checksum=checksum(delta), tombstones_checksum=checksum(tomb))
        _atomic_write_bytes(stamp_path, json.dumps(stamp.to_dict()).encode())
        self._stamp = stamp
        return stamp

    @classmethod
    def load(cls, directory: Path, path: Path, stamp: Stamp) -> OnDiskIndex | None:
        """The index ``stamp`` describes, or None when a file is missing or does not match."""
        import faiss

        try:
            if not checked.matches(path, stamp.checksum, file_checksum):
                log.warning("the index header %s does not match its checksum: rebuilding", path)
                return None
            base = _read(path)
            problem = lists_problem(directory, base, stamp, full=False)
            if problem:
                log.warning("the lists file of %s %s: rebuilding", path, problem)
                return None
            delta_bytes = np.fromfile(directory / DELTA_FILE, dtype=np.uint8)
            tomb_bytes = (directory / TOMBSTONES_FILE).read_bytes()
            if checksum(delta_bytes) != stamp.delta_checksum or checksum(tomb_bytes) != stamp.tombstones_checksum:
                log.warning("the delta of %s does not match its stamp: rebuilding", path)
                return None
            delta = faiss.deserialize_index(delta_bytes)
            tombstones = np.load(directory / TOMBSTONES_FILE)
            base_ids = np.load(directory / IDS_FILE, mmap_mode="r")
        except Exception as e:  # missing or unreadable files
            log.warning("cannot load the on-disk index in %s (%s): rebuilding", directory, e)
            return None
        index = cls(directory, base, delta, base_ids, tombstones, stamp)
        if index.ntotal != stamp.count or index.dim != stamp.dim:
            return None
        return index

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def build(cls, directory: Path, dim: int, factory: str, snapshot, sample: Callable[[int, int], np.ndarray],
              exact_vectors: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], budget: int,
              rerank: int = DEFAULT_RERANK) -> OnDiskIndex:
        """Train on a sample, add every vector in shards, merge them on disk, tune ``nprobe``.

        Args:
            directory: where the index files go.
            dim, factory: the vectors' dimension and the FAISS factory string (OPQ/IVF/PQ).
            snapshot: a :class:`~searchlib.catalog.VectorSnapshot` (count, ``chunks(n)``).
            sample: ``(n, seed) -> (m, dim)`` vectors drawn at random from the collection.
            exact_vectors: ``ids -> (ids, vectors)`` stored vectors (re-ranking during tuning).
            budget: the memory budget; chunks are sized so that building stays near it.
            rerank: candidates re-ranked exactly by searches (tuning aims at recall with it).
        """
        import faiss

        count = snapshot.count
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        nlist = int(_ivf(index).nlist)
        _cheaper_training(index)
        n_train = min(count, max(40 * nlist, 40 * 256))
        train = sample(n_train, 0)
        log.info("training %s on %d of %d vectors", factory, len(train), count)
        with faiss_warnings_logged():
            index.train(np.ascontiguousarray(train, dtype=np.float32))
        del train
        trained = faiss.serialize_index(index)
        held_out = _queries(sample(min(TUNING_QUERIES, count), 1), dim)
        truth = _RunningTopK(held_out, 10)
        token = uuid.uuid4().hex[:12]
        remove_stale_build_folders(directory)
        # Everything is written in a locked work folder and moved into place at the end: a killed
        # build leaves only that folder, which the next writer (or build) removes.
        with build_folder(directory) as work:
            shard_files, all_ids = _add_in_shards(trained, snapshot, work, truth, _chunk_rows(budget, dim))
            base = faiss.deserialize_index(trained)
            merged = work / f"vectors.{token}.ivfdata"
            from faiss.contrib.ondisk import merge_ondisk

            with _quiet_stdout():  # faiss prints "resizing ..." on stdout
                merge_ondisk(base, [str(f) for f in shard_files], str(merged))
            for f in shard_files:
                f.unlink(missing_ok=True)
            header = work / "vectors.faiss"
            faiss.write_index(base, str(header))  # names the lists; read back from the header's folder
            del base
            ids = np.sort(np.concatenate(all_ids)) if all_ids else np.zeros(0, np.int64)
            ivfdata = directory / merged.name
            os.replace(merged, ivfdata)
            _atomic_write_bytes(directory / IDS_FILE, _npy_bytes(ids))
            path = directory / "vectors.faiss"
            os.replace(header, path)
        _remove_other_ivfdata(directory, keep=ivfdata.name)
        base = _read(path)
        empty = faiss.deserialize_index(trained)
        stamp = Stamp(generation=snapshot.generation, count=int(len(ids)), dim=dim, index_type=factory,
                      trained_count=int(len(ids)), kind="ondisk", checksum=file_checksum(path),
                      file_size=path.stat().st_size, ivfdata=ivfdata.name, ivfdata_checksum=file_checksum(ivfdata),
                      rerank=rerank)
        built = cls(directory, base, empty, np.load(directory / IDS_FILE, mmap_mode="r"), np.zeros(0, np.int64), stamp)
        built._tune(held_out, truth.ids(), exact_vectors)
        return built

    def _tune(self, queries: np.ndarray, truth: np.ndarray, exact_vectors) -> None:
        """The smallest ``nprobe`` (with ``efSearch`` = 2 x ``nprobe``) whose recall@10 — after the
        re-rank when there is one — reaches :data:`RECALL_TARGET` on the held-out queries."""
        k = min(10, truth.shape[1])
        candidates = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if p <= self.nlist]
        for nprobe in candidates:
            self.nprobe, self.ef_search = nprobe, max(16, 2 * nprobe)
            _, got = self.search(queries, max(k, self.rerank))
            plain = _recall(got[:, :k], truth)
            reranked = _recall(_rerank_ids(queries, got, exact_vectors, k), truth) if self.rerank else plain
            self.recall_at_10, self.recall_at_10_rerank = plain, reranked
            if reranked >= RECALL_TARGET:
                break
        self._stamp = replace(self._stamp, nprobe=self.nprobe, ef_search=self.ef_search,
                              recall_at_10=round(self.recall_at_10, 4),
                              recall_at_10_rerank=round(self.recall_at_10_rerank, 4))
        log.info("%s: nprobe %d, efSearch %d: recall@10 %.3f, %.3f re-ranking %d", self.index_type, self.nprobe,
                 self.ef_search, self.recall_at_10, self.recall_at_10_rerank, self.rerank)


def _queries(sample: np.ndarray, dim: int) -> np.ndarray:
    """Held-out vectors nudged off the stored ones: like a text query near its images."""
    from .vectormath import normalize

    rng = np.random.default_rng(2)
    return normalize(sample + rng.normal(scale=0.5 / math.sqrt(dim), size=sample.shape).astype(np.float32))


class _RunningTopK:
    """Exact top-``k`` of a few queries, accumulated over chunks of the collection."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self._ids = np.zeros((len(queries), 0), dtype=np.int64)

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        sims = self.queries @ vectors.T
        scores = np.concatenate([self.scores, sims], axis=1)
        all_ids = np.concatenate([self._ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        top = np.argsort(-scores, axis=1)[:, :self.k]
        self.scores = np.take_along_axis(scores, top, axis=1)
        self._ids = np.take_along_axis(all_ids, top, axis=1)

    def ids(self) -> np.ndarray:
        return self._ids


def _recall(got: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(g[:k].tolist()) & set(t.tolist())) / k for g, t in zip(got, truth)]))


def _rerank_ids(queries: np.ndarray, candidates: np.ndarray, exact_vectors, k: int) -> np.ndarray:
    ids, vectors = exact_vectors(np.unique(candidates[candidates >= 0]))
    lookup = {int(i): v for i, v in zip(ids.tolist(), vectors)}
    out = []
    for q, row in zip(queries, candidates):
        kept = [int(i) for i in row if int(i) in lookup]
        scores = np.array([lookup[i] @ q for i in kept]) if kept else np.zeros(0)
        out.append([kept[j] for j in np.argsort(-scores)[:k]] + [-1] * max(0, k - len(kept)))
    return np.asarray(out, dtype=np.int64)


def _chunk_rows(budget: int, dim: int) -> int:
    """Vectors per shard: two chunks in flight (one read, one encoded) within an eighth of the budget."""
    return int(max(10_000, min(500_000, budget // 16 // (4 * dim))))


def _add_in_shards(trained: np.ndarray, snapshot, work: Path, truth: _RunningTopK, rows: int):
    """Encode every chunk into a shard file; the next chunk is read meanwhile on another thread."""
    import faiss

    chunks: queue.Queue = queue.Queue(maxsize=1)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for part in snapshot.chunks(rows):
                chunks.put(part)
        except BaseException as e:  # handed to the encoding loop
            failure.append(e)
        finally:
            chunks.put(None)

    reader = threading.Thread(target=read, name="searchlib-read-vectors", daemon=True)
    reader.start()
    files, all_ids = [], []
    while (part := chunks.get()) is not None:
        ids, vectors = part
        shard = faiss.deserialize_index(trained)
        shard.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids))
        path = work / f"shard-{len(files):05d}.faiss"
        faiss.write_index(shard, str(path))
        files.append(path)
        all_ids.append(np.asarray(ids, dtype=np.int64))
        truth.update(ids, vectors)
        log.info("encoded %d vectors into shard %d", len(ids), len(files))
    reader.join()
    if failure:
        raise failure[0]
    return files, all_ids


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.int64))
    return buf.getvalue()


def _remove_other_ivfdata(directory: Path, keep: str) -> None:
    """Old lists are not referenced any more (a reader that mapped them keeps its mapping)."""
    for path in directory.glob("vectors.*.ivfdata"):
        if path.name != keep:
            path.unlink(missing_ok=True)
