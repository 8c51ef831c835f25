"""Embedding decoded images a model batch at a time and committing them in batches.

Commits run on a writer thread so that catalog writes and FAISS updates overlap the model instead
of stalling it. Each batch is one SQLite transaction (rows, vectors and the generation bump
together): a killed run loses at most the batches not yet committed and never leaves half of one.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from searchlib.catalog import NewImage
from searchlib.embedding import Embedder
from searchlib.errors import ConfigError
from searchlib.index import Index
from searchlib.vectors import VectorIndex

from .embedstage import EmbedStage
from .pipeline import Decoded, Failed, decode_file
from .scan import FileEntry

#: Commit at most this many images at once (and at least every ``commit_seconds``).
COMMIT_MAX = 1024


class CatalogWriter:
    """A thread applying batches to the catalog and then to the in-memory FAISS index, in order."""

    def __init__(self, index: Index, vectors: VectorIndex):
        self.index, self.vectors = index, vectors
        self.rebuild = False  # set when the index type cannot remove vectors (HNSW)
        self._queue: queue.Queue = queue.Queue(maxsize=2)  # backpressure: at most two batches wait
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="searchlib-writer", daemon=True)
        self._thread.start()

    def submit(self, added: list[NewImage], updated: list[tuple[int, NewImage]]) -> None:
        self._raise_if_failed()
        self._queue.put((added, updated))

    def close(self) -> None:
        """Wait until every submitted batch is committed; re-raise a failure of the thread."""
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def remove_vectors(self, ids: list[int]) -> None:
        try:
            self.vectors.remove(np.asarray(ids, dtype=np.int64))
        except ConfigError:
            self.rebuild = True  # rebuilt from the catalog at the end of the run

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the main thread re-raises at its next call
            try:
                self._write(*job)
            except BaseException as e:  # handed to the main thread
                self._error = e

    def _write(self, added: list[NewImage], updated: list[tuple[int, NewImage]]) -> None:
        new_ids, generation = self.index.catalog.write_batch(added, updated)
        if updated:
            self.remove_vectors([i for i, _ in updated])
        ids = np.asarray(new_ids + [i for i, _ in updated], dtype=np.int64)
        self.vectors.add(ids, np.stack([i.vector for i in added] + [u.vector for _, u in updated]))
        self.index.adopt_vectors(self.vectors, generation)


class BatchCommitter:
    """Collects decoded images, embeds them a model batch at a time, commits in batches.

    Embedding runs on an :class:`~indexer.embedstage.EmbedStage` thread; files whose bytes are
    already in the catalog skip it. A file whose bytes match a row whose file is gone is a move:
    that row takes the new path and keeps its id and vector. Bytes matching any other row are a
    copy: a new row, stored vector.
    """

    def __init__(self, index: Index, vectors: VectorIndex, embedder: Embedder, known: dict, report,
                 gone_by_hash: dict[str, list[int]], commit_seconds: float,
                 stage: EmbedStage | None = None):
        self.index, self.embedder = index, embedder
        self.known, self.report = known, report
        self.gone_by_hash = gone_by_hash
        self.moved_ids: set[int] = set()
        self.decoded: list[Decoded] = []
        self.added: list[NewImage] = []
        self.updated: list[tuple[int, NewImage]] = []
        self.moves = 0
        self.placed = 0  # files given a vector so far
        self.commit_seconds = commit_seconds
        self.last_commit = time.monotonic()
        self.stage = stage or EmbedStage(embedder)
        self.writer = CatalogWriter(index, vectors)

    @property
    def rebuild(self) -> bool:
        return self.writer.rebuild

    def push(self, item: Decoded) -> None:
        self.decoded.append(item)
        if len(self.decoded) >= self.embedder.batch_size:
            self._embed()
        self._place_finished(wait=False)

    def ready(self) -> bool:
        pending = len(self.added) + len(self.updated)
        return pending >= COMMIT_MAX or (pending > 0 and time.monotonic() - self.last_commit >= self.commit_seconds)

    def _embed(self) -> None:
        """Place files with known bytes now; hand the rest to the device stage."""
        batch, self.decoded = self.decoded, []
        if not batch:
            return
        # Only files whose worker found their hash among the catalog's (and so left them
        # undecoded) can reuse a stored vector: asking about every file cost ~70 us per file.
        known = [d.content_hash for d in batch if d.pixels is None and not d.for_device]
        reuse = self.index.catalog.vectors_by_hash(known) if known else {}
        for d in batch:
            if d.content_hash in reuse:
                self._place(d, reuse[d.content_hash])
        fresh = [d for d in batch if d.content_hash not in reuse]
        missing = [d for d in fresh if d.pixels is None and not d.for_device]
        if missing:  # a 64-bit hash-key collision in the worker: decode here after all
            self._decode_now(missing)
            fresh = [d for d in fresh if d.pixels is not None or d.for_device]
        if fresh:
            self.stage.submit(fresh)

    def _place_finished(self, wait: bool) -> None:
        for done in self.stage.collect(wait=wait):
            for failure in done.failures:
                self.report.fail(failure.path, failure.error)
            for d, vector in zip(done.items, done.vectors):
                self._place(d, vector)

    def _place(self, d: Decoded, vector: np.ndarray) -> None:
        item = NewImage(d.path, d.size, d.mtime_ns, d.content_hash, d.metadata, vector)
        self.placed += 1
        if d.path in self.known:
            self.updated.append((self.known[d.path][0], item))
        elif self.gone_by_hash.get(d.content_hash):
            self.updated.append((self.gone_by_hash[d.content_hash].pop(), item))
            self.moved_ids.add(self.updated[-1][0])
            self.moves += 1
        else:
            self.added.append(item)

    def _decode_now(self, items: list[Decoded]) -> None:
        for d in items:
            result = decode_file(FileEntry(d.path, d.size, d.mtime_ns), self.embedder.preprocess,
                                 None, skip_known=False)
            if isinstance(result, Failed):
                self.report.fail(result.path, result.error)
            else:
                d.pixels = result.pixels

    def flush(self, final: bool = False) -> None:
        """Hand the embedded images to the writer thread (and, if ``final``, embed the rest first)."""
        if final:
            self._embed()
        self._place_finished(wait=final)
        added, updated = self.added, self.updated
        self.added, self.updated = [], []
        if not added and not updated:
            return
        self.writer.submit(added, updated)
        self.report.added += len(added)
        self.report.updated += len(updated) - self.moves
        self.report.moved += self.moves
        self.moves = 0
        self.last_commit = time.monotonic()

    def close(self) -> None:
        """Wait for every batch to be committed."""
        try:
            self.stage.close()
        finally:
            self.writer.close()
