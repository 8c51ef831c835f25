"""Embedding decoded images a model batch at a time and committing them in batches.

Commits run on a writer thread so that catalog writes and FAISS updates overlap the model instead
of stalling it. Each batch goes through :meth:`searchlib.index.IndexWriter.apply`: one catalog
transaction (rows, vectors, the generation bump and the change log together), then the same
change to the FAISS cache. A killed run loses at most the batches not yet committed and never
leaves half of one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from searchlib.catalog import ChangeSet, FailedFile, FileState
from searchlib.embedding import Embedder
from searchlib.index import IndexWriter
from searchlib.models import ModelIdentity

from .embedstage import EmbedStage
from .pipeline import Decoded, Failed, decode_file
from .scan import FileEntry

#: Commit at most this many images at once (and at least every ``commit_seconds``).
COMMIT_MAX = 1024


class CatalogWriter:
    """A thread applying batches through the index's writer, in order."""

    def __init__(self, writer: IndexWriter):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=2)  # backpressure: at most two batches wait
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="searchlib-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: ChangeSet) -> None:
        self._raise_if_failed()
        self._queue.put(batch)

    def close(self) -> None:
        """Wait until every submitted batch is committed; re-raise a failure of the thread."""
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the main thread re-raises at its next call
            try:
                self.writer.apply(batch)
            except BaseException as e:  # handed to the main thread
                self._error = e


@dataclass
class Pending:
    """What the next commit will hold."""

    added: list[tuple] = field(default_factory=list)
    updated: list[tuple] = field(default_factory=list)
    moved: list[tuple] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)  # old rows of videos updated or moved
    files: dict[str, int] = field(default_factory=lambda: {"added": 0, "updated": 0, "moved": 0})

    def __len__(self) -> int:
        return len(self.added) + len(self.updated) + len(self.moved) + len(self.failed) + len(self.removed)


class BatchCommitter:
    """Collects decoded images, embeds them a model batch at a time, commits in batches.

    Embedding runs on an :class:`~searchlib.indexer.embedstage.EmbedStage` thread; files whose
    bytes are already in the catalog skip it. A file whose bytes match a row whose file is gone is
    a move: that row takes the new path and keeps its id and vector. Bytes matching any other row
    are a copy: a new row, stored vector.

    Args:
        writer: the index's writer.
        embedder: the model.
        known: catalog rows under the roots, by path.
        report: the run report (counts and failures are added to it).
        gone_by_hash: rows whose files are gone, by content hash (move candidates).
        commit_seconds: commit at least this often.
        stage: the device stage.
        identity: the model identity to record with the first batch (a new index), else None.
        keep_failure: asked ``(path, size, mtime_ns)`` about each failure; False drops it, neither
            reported nor remembered (the watcher's: a file that changed or vanished while it was
            read, or is still being written, is tried again later).
    """

    def __init__(self, writer: IndexWriter, embedder: Embedder, known: dict[str, FileState], report,
                 gone_by_hash: dict[str, list[int]], commit_seconds: float, stage: EmbedStage,
                 identity: ModelIdentity | None = None,
                 keep_failure: Callable[[str, int, int], bool] | None = None):
        self.writer_ref, self.embedder = writer, embedder
        self.known, self.report = known, report
        self.gone_by_hash = gone_by_hash
        self.moved_ids: set[int] = set()
        self.decoded: list[Decoded] = []
        self.segments: dict[str, list[tuple[Decoded, np.ndarray]]] = {}  # a video's items so far
        self.pending = Pending()
        self.placed = 0  # files given a vector so far
        self.commit_seconds = commit_seconds
        self.last_commit = time.monotonic()
        self.stage = stage
        self.identity = identity
        self.keep_failure = keep_failure
        self.writer = CatalogWriter(writer)

    def push(self, item: Decoded) -> None:
        for one in item.items():  # a video: one item per segment, embedded alongside images
            self.decoded.append(one)
            if len(self.decoded) >= self.embedder.batch_size:
                self._embed()
        self._place_finished(wait=False)

    def fail(self, failure: Failed) -> None:
        """Report a file that could not be used and remember it (by size and mtime) in the catalog."""
        if self.keep_failure is not None and not self.keep_failure(failure.path, failure.size, failure.mtime_ns):
            return
        self.report.fail(failure.path, failure.error)
        if failure.size >= 0:
            self.pending.failed.append(FailedFile(failure.path, failure.size, failure.mtime_ns, failure.error))

    def ready(self) -> bool:
        pending = len(self.pending)
        return pending >= COMMIT_MAX or (pending > 0 and time.monotonic() - self.last_commit >= self.commit_seconds)

    def _embed(self) -> None:
        """Place files with known bytes now; hand the rest to the device stage."""
        batch, self.decoded = self.decoded, []
        if not batch:
            return
        # Only files whose worker found their hash among the catalog's (and so left them
        # undecoded) can reuse a stored vector: asking about every file cost ~70 us per file.
        known = [d.content_hash for d in batch if d.pixels is None and not d.for_device]
        reuse = self.writer_ref.catalog.vectors_by_hash(known) if known else {}
        texts = self.writer_ref.catalog.texts_by_hash(reuse) if reuse else {}
        for d in batch:
            if d.content_hash in reuse:
                if d.content_hash in texts:  # the same bytes read before: keep their words
                    d = replace(d, metadata=replace(d.metadata, text=texts[d.content_hash]))
                self.place(d, reuse[d.content_hash])
        fresh = [d for d in batch if d.content_hash not in reuse]
        missing = [d for d in fresh if d.pixels is None and not d.for_device]
        if missing:  # a 64-bit hash-key collision in the worker: decode here after all
            fresh = [d for d in fresh if d.pixels is not None or d.for_device] + self._decode_now(missing)
        if fresh:
            self.stage.submit(fresh)

    def _place_finished(self, wait: bool) -> None:
        for done in self.stage.collect(wait=wait):
            for failure in done.failures:
                self.fail(failure)
            for d, vector in zip(done.items, done.vectors):
                self.place(d, vector)

    def place(self, d: Decoded, vector: np.ndarray) -> None:
        """A file with its vector (embedded elsewhere, or stored): an update, a move or a new row.
        A video's segments wait for each other and are placed together."""
        if d.segment is not None:
            self._place_segment(d, vector)
            return
        record = d.record
        self.placed += 1
        state = self.known.get(d.path)
        if state is not None and state.all_ids == (state.id,):
            self.pending.updated.append((state.id, record, vector))
            self.pending.files["updated"] += 1
        elif state is not None:  # was a video: its segment rows give way to the one row
            self.pending.removed.extend(state.all_ids)
            self.pending.added.append((record, vector))
            self.pending.files["updated"] += 1
        elif self.gone_by_hash.get(d.content_hash):
            image_id = self.gone_by_hash[d.content_hash].pop()
            self.pending.moved.append((image_id, record, vector))
            self.pending.files["moved"] += 1
            self.moved_ids.add(image_id)
        else:
            self.pending.added.append((record, vector))
            self.pending.files["added"] += 1

    def _place_segment(self, d: Decoded, vector: np.ndarray) -> None:
        """Hold a video's segment until all of them have vectors, then write the file's rows in one
        batch: a changed video's old rows are removed and its new ones added in the same
        transaction, and so are the rows of a video that moved (same bytes, gone from its path)."""
        done = self.segments.setdefault(d.path, [])
        done.append((d, vector))
        if len(done) < d.parts:
            return
        del self.segments[d.path]
        self.placed += 1
        state = self.known.get(d.path)
        old: list[int] = list(state.all_ids) if state is not None else []
        kind = "updated" if state is not None else "added"
        if state is None and self.gone_by_hash.get(d.content_hash):
            old = self.gone_by_hash.pop(d.content_hash)  # every row of the old copy (or copies)
            self.moved_ids.update(old)
            kind = "moved"
        self.pending.removed.extend(old)
        self.pending.added.extend((item.record, v) for item, v in sorted(done, key=lambda p: p[0].segment.part))
        self.pending.files[kind] += 1

    def _decode_now(self, items: list[Decoded]) -> list[Decoded]:
        decoded = []
        for d in items:
            result = decode_file(FileEntry(d.path, d.size, d.mtime_ns), self.embedder.preprocess,
                                 None, skip_known=False)
            if isinstance(result, Failed):
                self.fail(result)
            else:
                decoded.append(replace(d, pixels=result.pixels))
        return decoded

    def flush(self, final: bool = False) -> None:
        """Hand the embedded images to the writer thread (and, if ``final``, embed the rest first)."""
        if final:
            self._embed()
        self._place_finished(wait=final)
        if final:
            for path, done in self.segments.items():  # a segment failed: the video is not half-indexed
                d = done[0][0]
                self.fail(Failed(path, f"only {len(done)} of {d.parts} video segments could be embedded",
                                 d.size, d.mtime_ns))
            self.segments.clear()
        pending, self.pending = self.pending, Pending()
        if not len(pending):
            return
        batch = ChangeSet(added=pending.added, updated=pending.updated, moved=pending.moved, failed=pending.failed,
                          removed=pending.removed, identity=self.identity)
        self.identity = None  # recorded with the first batch only
        self.writer.submit(batch)
        self.report.added += pending.files["added"]  # files, not rows: a video counts once
        self.report.updated += pending.files["updated"]
        self.report.moved += pending.files["moved"]
        self.last_commit = time.monotonic()

    def close(self) -> None:
        """Wait for every batch to be committed."""
        try:
            self.stage.close()
        finally:
            self.writer.close()
