"""``index_folder``: bring an index up to date with folders on disk, committing in batches."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from searchlib.catalog import ChangeSet
from searchlib.devicedecode import DeviceJpegDecoder, device_decoding_supported, device_jpeg_available
from searchlib.embedding import Embedder
from searchlib.errors import ConfigError, IndexCorruptError, SearchlibError, StorageFullError
from searchlib.imaging import Preprocess
from searchlib.index import Index, IndexWriter
from searchlib.models import ensure_available, parse_model_spec, spec_matches
from searchlib.ocr import check_available
from searchlib.records import content_hash

from .commit import BatchCommitter
from .embedstage import EmbedStage
from .options import IndexOptions, resolve_roots
from .pipeline import Failed, decode_stream
from .plan import Plan, make_plan
from .scan import FileEntry
from .split import DecodeSplit

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Reported to the ``progress`` callback, from the calling thread.

    ``phase`` is ``scanning`` (``done`` counts files found so far), ``loading model``,
    ``embedding`` (``done`` of ``total`` files finished: embedded, given a stored vector, or
    failed) or ``finishing`` (saving the vector index).
    """

    done: int
    total: int
    failed: int
    phase: str = "embedding"


@dataclass
class IndexReport:
    """What an index run did (the CLI's ``--json`` output)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    moved: int = 0
    failed: int = 0
    failed_before: int = 0  # unchanged files that failed in an earlier run (not retried)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    device_decoded: int = 0  # JPEGs decoded by the device decoder rather than the CPU workers
    cancelled: bool = False

    def to_dict(self) -> dict:
        from searchlib.records import path_fields

        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "removed": self.removed, "moved": self.moved, "failed": self.failed,
            "failed_before": self.failed_before,
            "failures": [{**path_fields(f["path"]), "error": f["error"]} for f in self.failures],
            "seconds": round(self.seconds, 3), "device_decoded": self.device_decoded, "cancelled": self.cancelled,
        }

    def fail(self, path: str, error: str) -> None:
        self.failed += 1
        self.failures.append({"path": path, "error": error})
        log.warning("%s: %s", path, error)


ProgressCallback = Callable[[Progress], None]


def index_folder(index_dir: str | os.PathLike, *paths: str | os.PathLike, options: IndexOptions | None = None,
                 progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
                 **option_values) -> IndexReport:
    """Index image files under ``paths`` into the index at ``index_dir``.

    New files are embedded, files whose size or mtime changed are re-embedded, unchanged files are
    skipped without reading, files that failed before and have not changed are not retried, and
    rows of files gone from disk (inside ``paths``) are removed.

    Args:
        index_dir: the index directory (created if missing).
        paths: folders or files to index.
        options: an :class:`IndexOptions`; or give its fields as keywords (``model="bundled"``).
        progress: called with a :class:`Progress` as the run goes (in this thread).
        cancel: set this event (from another thread) to stop early: files in flight are
            dropped, everything embedded so far is committed, and the report says ``cancelled``.

    Raises:
        SearchlibError: a bad path or option, a model problem, a model mismatch, or a busy index.
    """
    unknown = set(option_values) - IndexOptions.names()
    if unknown:
        raise TypeError(f"index_folder() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    if options is None:
        options = IndexOptions(**option_values)
    elif option_values:
        from dataclasses import replace

        options = replace(options, **option_values)
    started = time.perf_counter()
    roots = resolve_roots(paths)
    report = IndexReport()
    check_model_before_creating(index_dir, options)
    index = Index.open_or_create(index_dir, device=options.device, catalog=options.catalog)
    try:
        with index.writer(roots) as writer:
            problem = index.catalog.quick_check()
            if problem:
                raise IndexCorruptError(f"the catalog {index.catalog.describe()} is damaged ({problem}); nothing was "
                                        "written: restore it, or move the index away and index again")
            if options.index_type:
                writer.set_index_type(options.index_type)
            if options.read_text:
                check_available()
            writer.configure(options.max_index_memory, options.rerank, options.vector_dtype, options.read_text)
            try:
                _Run(index, writer, options, roots, report, progress, cancel).run()
            except StorageFullError as e:
                committed = index.catalog.count()
                raise StorageFullError(f"{e} ({committed} images are committed)") from e
    finally:
        index.close()
    report.seconds = time.perf_counter() - started
    return report


def check_model_before_creating(index_dir, options: IndexOptions) -> None:
    """Fail fast, before anything is created or anything heavy is imported, when the model asked
    for (or the default model of a new index) cannot be loaded here."""
    from pathlib import Path

    from searchlib.config import CATALOG_FILE

    is_new = options.catalog is None and not (Path(index_dir).expanduser() / CATALOG_FILE).is_file()
    if options.model is not None or options.checkpoint is not None or is_new:
        ensure_available(parse_model_spec(options.model, options.checkpoint))


def index_pass(index: Index, writer: IndexWriter, roots: list[str], options: IndexOptions, report: IndexReport, *,
               embedder: Embedder | None = None, vanished: Sequence[str] = (), finish: bool = True,
               hold: Callable[[FileEntry], bool] | None = None,
               keep_failure: Callable[[str, int, int], bool] | None = None,
               cancel: threading.Event | None = None) -> tuple[Embedder | None, list[str]]:
    """One pass of the index pipeline over ``roots`` with a writer the caller holds: what
    :func:`index_folder` does inside its lock, for drivers that hold the lock across passes (the
    watcher). Same plan, decode workers, device stage and batch commits; no second write path.

    Args:
        roots: existing files and folders to scan (absolute, as :func:`resolve_roots` gives).
        embedder: the model from an earlier pass (kept loaded), or None to make one when needed.
        vanished: paths gone from disk whose rows are swept (see :func:`make_plan`).
        finish: save the vector index and export the text tower at the end (else the caller does,
            through ``writer.finish``, when it chooses).
        hold, keep_failure: see :func:`make_plan` and :class:`BatchCommitter`.

    Returns:
        The embedder (None if nothing needed it) and the files ``hold`` kept back.
    """
    run = _Run(index, writer, options, roots, report, None, cancel)
    run.embedder, run.vanished, run.hold, run.keep_failure = embedder, vanished, hold, keep_failure
    run.run(finish=finish)
    return run.embedder, run.held


class _Run:
    """One index run: plan, decode, embed, commit, sweep, finish."""

    def __init__(self, index: Index, writer: IndexWriter, options: IndexOptions, roots: list[str],
                 report: IndexReport, progress: ProgressCallback | None, cancel: threading.Event | None):
        self.index, self.writer, self.options, self.roots = index, writer, options, roots
        self.report, self.progress, self.cancel = report, progress, cancel
        self.embedder: Embedder | None = None
        self.vanished: Sequence[str] = ()
        self.hold: Callable[[FileEntry], bool] | None = None
        self.keep_failure: Callable[[str, int, int], bool] | None = None
        self.held: list[str] = []

    def _tell(self, done: int, total: int, phase: str) -> None:
        if self.progress:
            self.progress(Progress(done, total, self.report.failed, phase))

    def run(self, finish: bool = True) -> None:
        o, stored = self.options, self.index.identity
        if stored is not None and (o.model is not None or o.checkpoint is not None) and self.embedder is None:
            spec_matches(parse_model_spec(o.model, o.checkpoint), stored)  # fails before any weights load
        plan = make_plan(self.index.catalog, self.roots, self.options, self.report,
                         lambda n: self._tell(n, 0, "scanning"), self.vanished, self.hold, self.keep_failure)
        self.held = plan.held
        if plan.todo and self.embedder is None:
            self.embedder = self._embedder()
        embedder = self.embedder
        moved: set[int] = set()
        if plan.todo:
            moved = self._embed_all(plan, embedder)
        if self.index.catalog.get_setting("read_text") == "1" and not self.report.cancelled:
            self._read_unread_text()
        leftover = [i for i in plan.gone_ids() if i not in moved]
        if (leftover or plan.failures_gone) and not self.report.cancelled:
            self.writer.apply(ChangeSet(removed=leftover, forget_failures=plan.failures_gone))
            self.report.removed = len(leftover)
        if finish:
            self._tell(0, 0, "finishing")
            self.writer.finish(embedder)

    def _read_unread_text(self) -> None:
        """Read the words in photos indexed before reading was turned on (their text is NULL; a
        photo read without finding words has ''). Their vectors stay; each update goes through the
        writer like any other."""
        from dataclasses import replace

        from .pipeline import read_file, text_in_image

        catalog = self.index.catalog
        todo = catalog.unread_text(self.roots)
        for start in range(0, len(todo), 64):
            chunk = todo[start:start + 64]
            stored = catalog.images([i for i, _ in chunk])
            ids, vectors = catalog.vectors_of([i for i, _ in chunk])
            vector_of = dict(zip(ids.tolist(), vectors))
            updates = []
            for image_id, path in chunk:
                row = stored.get(image_id)
                if row is None or image_id not in vector_of:
                    continue
                try:
                    data, _ = read_file(path)
                except (OSError, SearchlibError):
                    continue  # gone or unreadable now: the next run's scan deals with it
                if content_hash(data) != row.record.content_hash:
                    continue  # changed since: the next run re-indexes it, words included
                words = text_in_image(path, data, self.options.max_pixels)
                record = replace(row.record, metadata=replace(row.record.metadata, text=words))
                updates.append((image_id, record, vector_of[image_id]))
            if updates:
                self.writer.apply(ChangeSet(updated=updates))
            self._tell(start + len(chunk), len(todo), "reading text")
            if self.cancel is not None and self.cancel.is_set():
                self.report.cancelled = True
                return

    def _embedder(self) -> Embedder:
        """The model: the index's own (its weights load when a batch first needs them), or the one
        asked for (checked against the index's; a new index records it with its first batch)."""
        o = self.options
        stored = self.index.identity
        if stored is not None and o.model is None and o.checkpoint is None:
            return Embedder(stored.to_spec(), device=o.device, batch_size=o.batch_size, expected=stored,
                            backend=o.backend)
        spec = parse_model_spec(o.model, o.checkpoint)
        embedder = Embedder(spec, device=o.device, batch_size=o.batch_size, backend=o.backend)
        self._tell(0, 0, "loading model")
        if stored is not None:
            embedder.check_matches(stored)
        return embedder

    def _preprocess(self, embedder: Embedder) -> Preprocess:
        stored = self.index.identity
        if stored is not None:  # known without loading the weights
            return Preprocess(stored.image_size, stored.interpolation, stored.resize_mode)
        return embedder.preprocess

    def _embed_all(self, plan: Plan, embedder: Embedder) -> set[int]:
        if self.options.ray:
            return self._embed_all_on_ray(plan, embedder)
        o = self.options
        catalog = self.index.catalog
        prep = self._preprocess(embedder)
        workers = o.worker_count
        decoder, split = _device_decoding(embedder, o.jpeg_decoder, workers, prep)
        identity = embedder.identity if self.index.identity is None else None
        stage = EmbedStage(embedder, decoder, split, o.max_pixels)
        committer = BatchCommitter(self.writer, embedder, plan.known, self.report,
                                   catalog.hashes_of(plan.gone_ids()), o.commit_seconds, stage, identity,
                                   self.keep_failure)
        total = len(plan.todo)
        failed_before = self.report.failed
        # Two model batches in flight keep the device fed; more would only hold more images in memory.
        read_text = catalog.get_setting("read_text") == "1"
        stream = decode_stream(plan.todo, prep, workers=workers, max_pixels=o.max_pixels,
                               known_hashes=catalog.known_hashes(), ahead=2 * embedder.batch_size, route=split,
                               read_text=read_text)
        try:
            try:
                for result in stream:
                    if isinstance(result, Failed):
                        committer.fail(result)
                    else:
                        if split is not None and not result.segments and (result.pixels is not None
                                                                          or result.for_device):
                            split.observe_file(result.seconds, result.offered, result.for_device)
                        committer.push(result)
                    if committer.ready():
                        committer.flush()
                    self._tell(committer.placed + self.report.failed - failed_before, total, "embedding")
                    if self.cancel is not None and self.cancel.is_set():
                        self.report.cancelled = True
                        log.info("indexing cancelled: committing what is embedded")
                        break
            finally:
                stream.close()  # stops the workers (kills them if files are still in flight)
            committer.flush(final=True)
        except BaseException:
            # Interrupted (Ctrl-C, an error, a progress callback that raised): keep what was
            # embedded, then let the interruption through.
            try:
                committer.flush(final=False)
            finally:
                committer.close()
            raise
        committer.close()  # waits for the writer thread: every batch handed over is committed
        self._tell(committer.placed + self.report.failed - failed_before, total, "embedding")
        if split is not None:
            self.report.device_decoded = split.device_files
            log.info("%s", split.summary())
        return committer.moved_ids


    def _embed_all_on_ray(self, plan: Plan, embedder: Embedder) -> set[int]:
        """Decode on Ray tasks and embed on Ray actors; commit here (see :mod:`.distributed`)."""
        from . import distributed

        o = self.options
        catalog = self.index.catalog
        started = distributed.connect(None if o.ray == "local" else o.ray)
        identity = embedder.identity
        new_identity = identity if self.index.identity is None else None
        # The local stage only serves the rare file whose 64-bit hash key collided in a task.
        stage = EmbedStage(embedder, None, None, o.max_pixels)
        committer = BatchCommitter(self.writer, embedder, plan.known, self.report,
                                   catalog.hashes_of(plan.gone_ids()), o.commit_seconds, stage, new_identity)
        total, seen = len(plan.todo), set()
        try:
            rows = distributed.embedded_rows(plan.todo, identity, catalog.known_hashes(), o.device, o.backend,
                                             o.batch_size, o.max_pixels)
            for row in rows:
                result, vector = distributed.to_result(row)
                if result.path in seen:  # delivered again by a retried task
                    continue
                seen.add(result.path)
                if isinstance(result, Failed):
                    committer.fail(result)
                elif vector is not None:
                    committer.place(result, vector)
                else:
                    committer.push(result)  # bytes already in the catalog: its stored vector is reused
                if committer.ready():
                    committer.flush()
                self._tell(len(seen), total, "embedding")
                if self.cancel is not None and self.cancel.is_set():
                    self.report.cancelled = True
                    break
            committer.flush(final=True)
        except BaseException as e:
            try:
                committer.flush(final=False)
            finally:
                committer.close()
                if started:
                    import ray

                    ray.shutdown()
            if isinstance(e, Exception) and not isinstance(e, SearchlibError):
                raise SearchlibError(f"Ray failed: {' '.join(str(e).split())[:400]}") from e
            raise
        committer.close()
        if started:
            import ray

            ray.shutdown()
        return committer.moved_ids


def _device_decoding(embedder: Embedder, mode: str, workers: int, prep: Preprocess
                     ) -> tuple[DeviceJpegDecoder | None, DecodeSplit | None]:
    """The device JPEG decoder and the CPU/device split for this run (None, None: workers only)."""
    if mode == "cpu" or (mode == "auto" and not embedder.device.startswith("cuda")):
        return None, None
    if not device_decoding_supported(prep):
        if mode != "auto":
            raise ConfigError(f"the device JPEG decoder cannot reproduce this model's preprocessing "
                              f"({prep.interpolation}, {prep.resize_mode}); use --jpeg-decoder cpu")
        return None, None
    if not device_jpeg_available(embedder.device):
        if mode != "auto":
            raise ConfigError(f"torchvision cannot decode JPEGs on {embedder.device} here; use --jpeg-decoder cpu")
        return None, None
    # 'device' sends every JPEG it can; 'split' follows the measured costs from a first guess:
    # nvJPEG decodes a photo several times faster than a CPU core (start at half), torchvision's
    # CPU decoder is slower than the workers' reduced decode (start at a tenth). Files handed out
    # before the device's first batch is measured keep the guess, so it matters at the start.
    if mode == "device":
        split = DecodeSplit(workers, start=1.0, fixed=True)
    else:
        split = DecodeSplit(workers, start=0.5 if embedder.device.startswith("cuda") else 0.1)
    return DeviceJpegDecoder(prep, embedder.device), split
