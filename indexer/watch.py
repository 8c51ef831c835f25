"""``watch``: keep an index in step with folders that change, until told to stop.

The watcher holds the index's writer lock for its whole life (so a second watcher, or an
``index`` run, is refused), catches up first exactly as ``index`` does (what changed while nobody
watched), then follows changes (:mod:`.watchsources`) and runs the same pipeline
(:func:`~searchlib.indexer.run.index_pass`: plan, decode workers, model, ``IndexWriter`` batches)
over the paths that changed. Nothing here writes to the index by another way.

A changed path waits until nothing has touched it for ``debounce`` seconds; a file whose mtime is
younger than that when its pass scans it is held back and looked at again later, so a copy in
progress or a file written in chunks is read once, complete. A file that fails to decode while it
is younger than :data:`SETTLE_SECONDS` (or changed, or vanished, while it was read) is not recorded
as a failure: it is tried again when it settles.

A ``kill -9`` loses at most the batch in flight; the next start's catch-up does the rest (the
catalog is the truth, and a pass compares files with it: nothing is indexed twice).

A fault that passes (the catalog's database unreachable, the SQLite catalog locked by another
program, the disk full) does not end the watch: the session is closed, and after a wait that
doubles from 1 s up to a minute it starts again with a catch-up pass, which finds whatever changed
meanwhile. Only an outage longer than ``retry_for`` seconds ends it, with that fault's one-line
error. Nothing committed is lost either way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from searchlib.errors import (
    CatalogLockedError,
    CatalogUnavailableError,
    ConfigError,
    IndexCorruptError,
    StorageFullError,
)
from searchlib.imaging import is_image_name
from searchlib.index import Index, IndexWriter
from searchlib.ocr import check_available

from .options import IndexOptions, resolve_roots
from .run import IndexReport, check_model_before_creating, index_pass
from .scan import FileEntry, wanted
from .watchsources import POLL_SECONDS, RESCAN_ALL, ChangeFeed

log = logging.getLogger(__name__)

#: Seconds a path must stay untouched before it is read (a burst becomes one batch).
DEBOUNCE_SECONDS = 1.0
#: A file younger than this that fails to decode is probably still being written: tried again.
SETTLE_SECONDS = 5.0
#: A pass over more changed paths than this scans their folders instead (one cheap catalog query).
MAX_ROOTS_PER_PASS = 64
#: Passes over at most this many files decode in this process: starting worker processes would
#: cost more than the decoding.
IN_PROCESS_FILES = 16
#: Save the vector index file (readers catch up from the change log meanwhile) after this many
#: changes or this many seconds with changes, and always on exit.
SAVE_AFTER_CHANGES = 1000
SAVE_AFTER_SECONDS = 300.0
#: Faults a watch waits out: they pass without anyone changing the index or the command.
PASSING_FAULTS = (CatalogUnavailableError, CatalogLockedError, StorageFullError)
#: Seconds a watch keeps retrying through one outage by default; the first and longest wait.
RETRY_FOR_SECONDS = 600.0
RETRY_FIRST_WAIT, RETRY_LONGEST_WAIT = 1.0, 60.0


@dataclass
class WatchBatch:
    """What one pass committed (the CLI's ``--json``/``--nl`` line)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    failed: int = 0
    seconds: float = 0.0
    catch_up: bool = False
    failures: list[dict] = field(default_factory=list)

    @classmethod
    def from_report(cls, report: IndexReport, catch_up: bool = False) -> WatchBatch:
        d = report.to_dict()
        return cls(report.added, report.updated, report.removed, report.moved, report.failed,
                   report.seconds, catch_up, d["failures"])

    @property
    def changes(self) -> int:
        return self.added + self.updated + self.removed + self.moved + self.failed

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "removed": self.removed, "moved": self.moved,
                "failed": self.failed, "seconds": round(self.seconds, 3), "catch_up": self.catch_up,
                "failures": self.failures}


BatchCallback = Callable[[WatchBatch], None]
NoticeCallback = Callable[[str], None]


def watch(index_dir: str | os.PathLike, *paths: str | os.PathLike, options: IndexOptions | None = None,
          on_batch: BatchCallback | None = None, on_notice: NoticeCallback | None = None,
          stop: threading.Event | None = None, poll: float | None = None, poll_seconds: float = POLL_SECONDS,
          debounce: float = DEBOUNCE_SECONDS, max_watches: int | None = None,
          mounts_file: str = "/proc/mounts", retry_for: float = RETRY_FOR_SECONDS, **option_values) -> None:
    """Keep the index at ``index_dir`` in step with ``paths`` until ``stop`` is set.

    Catches up first (as :func:`~searchlib.indexer.index_folder` would), then indexes what changes:
    new, changed, deleted, renamed and moved files and folders (moves keep their stored vectors).

    Args:
        options: an :class:`IndexOptions` (or its fields as keywords), as for ``index_folder``.
        on_batch: called with a :class:`WatchBatch` after each committed pass (the catch-up too,
            even when it changed nothing), in this thread.
        on_notice: called with one-line messages about how changes are followed (events, polling
            and why, the watch limit).
        stop: set it (from another thread or a signal handler) to stop: the pass in flight commits
            what is embedded, the vector index is saved, and this returns.
        poll: poll everything every this many seconds instead of following file events.
        poll_seconds: how often folders that events can't see (network and FUSE mounts, folders
            past the watch limit) are polled.
        debounce: seconds a path must stay untouched before it is read.
        max_watches: follow at most this many folders with inotify; the rest is polled.
        mounts_file: the mount table to read (network and FUSE mounts are polled).
        retry_for: how long one outage of the catalog (database unreachable, SQLite locked, disk
            full) is waited out, in seconds, retrying with a doubling wait (1 s to 60 s) and a
            notice for each try; 0 ends the watch at the first fault.

    Raises:
        SearchlibError: a bad path or option, a model problem, a busy index (another watcher
            or an index run holds it), or a catalog fault that lasted longer than ``retry_for``.
    """
    unknown = set(option_values) - IndexOptions.names()
    if unknown:
        raise TypeError(f"watch() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    options = replace(options, **option_values) if options is not None else IndexOptions(**option_values)
    if options.ray:
        raise ConfigError("watch runs the local pipeline; index with --ray, then watch without it")
    if (poll is not None and not poll > 0) or not poll_seconds > 0:
        raise ConfigError("polling needs a number of seconds above 0")
    if not retry_for >= 0:
        raise ConfigError("retry_for must be 0 seconds or more")
    roots = resolve_roots(paths)
    files = [r for r in roots if not os.path.isdir(r)]
    if files:
        raise ConfigError(f"watch follows folders, and {files[0]} is not one: give the folder that holds it")
    check_model_before_creating(index_dir, options)
    watcher = _Watcher(index_dir, roots, options, poll, poll_seconds, debounce, max_watches, mounts_file,
                       on_batch or (lambda b: None), on_notice or (lambda s: None), stop or threading.Event())
    watcher.run_retrying(retry_for)


class _Watcher:
    """One watch session: the writer lock, the change feed, the pending paths, the passes."""

    def __init__(self, index_dir, roots: list[str], options: IndexOptions, poll: float | None, poll_seconds: float,
                 debounce: float, max_watches: int | None, mounts_file: str, on_batch: BatchCallback,
                 on_notice: NoticeCallback, stop: threading.Event):
        self.index_dir, self.roots, self.options = index_dir, roots, options
        self.poll_seconds = poll_seconds
        self.poll, self.debounce, self.max_watches, self.mounts_file = poll, debounce, max_watches, mounts_file
        self.on_batch, self.on_notice, self.stop = on_batch, on_notice, stop
        self.pending: dict[str, float] = {}  # path -> when it was last touched (monotonic)
        self.held_stats: dict[str, tuple[int, int]] = {}  # held file -> (size, mtime) when held
        self.embedder = None
        self.caught_up = False  # this session's catch-up pass committed
        self.unsaved = 0
        self.last_save = time.monotonic()

    def run_retrying(self, retry_for: float) -> None:
        """:meth:`run`, started again after a passing fault until one outage lasts ``retry_for``."""
        outage_since: float | None = None
        wait = RETRY_FIRST_WAIT
        while True:
            self.caught_up = False
            try:
                self.run()
                return
            except PASSING_FAULTS as e:
                if self.stop.is_set():
                    raise
                now = time.monotonic()
                if self.caught_up or outage_since is None:  # it worked for a while: a new outage
                    outage_since, wait = now, RETRY_FIRST_WAIT
                if now - outage_since + wait > retry_for:
                    raise
                self.on_notice(f"{e}; trying again in {wait:g} s (for up to {retry_for:g} s in all)")
                log.warning("watch: %s; retrying in %g s", e, wait)
                if self.stop.wait(wait):
                    return
                wait = min(wait * 2, RETRY_LONGEST_WAIT)

    def run(self) -> None:
        o = self.options
        index = Index.open_or_create(self.index_dir, device=o.device, catalog=o.catalog)
        try:
            with index.writer(self.roots) as writer:
                problem = index.catalog.quick_check()
                if problem:
                    raise IndexCorruptError(f"the catalog {index.catalog.describe()} is damaged ({problem}); "
                                            "nothing was written: restore it, or move the index away")
                if o.index_type:
                    writer.set_index_type(o.index_type)
                if o.read_text:
                    check_available()
                writer.configure(o.max_index_memory, o.rerank, o.vector_dtype, o.read_text)
                feed = ChangeFeed(self.roots, self._want_folder, self.poll, self.poll_seconds, self.max_watches,
                                  o.follow_symlinks, self.mounts_file)
                fault = None
                try:
                    feed.start()  # before the catch-up: what changes during it is heard
                    for line in feed.notices:
                        self.on_notice(line)
                    self._pass(index, writer, self.roots, [], catch_up=True)
                    self.caught_up = True
                    self._follow(index, writer, feed)
                except PASSING_FAULTS as e:
                    fault = e
                    raise
                finally:
                    feed.stop()
                    # After a catalog fault nothing is saved: the catalog could not take it, and the
                    # next session replays the change log onto the last saved vectors, as after a kill.
                    if fault is None:
                        writer.finish(self.embedder, for_queries=not self.stop.is_set())
        finally:
            index.close()

    # -- which paths matter ---------------------------------------------------------------------

    def _root_of(self, path: str) -> str | None:
        for root in self.roots:
            if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                return root
        return None

    def _want_folder(self, path: str) -> bool:
        root = self._root_of(path)
        return root is not None and wanted(path, root, self.options.exclude, self.options.include_hidden)

    def _relevant(self, path: str) -> bool:
        """A path worth a pass: an image file, a folder, or something gone (maybe a folder)."""
        if not self._want_folder(path):
            return False
        if os.path.isdir(path):
            return True
        return is_image_name(os.path.basename(path)) or not os.path.lexists(path)

    # -- the loop -------------------------------------------------------------------------------

    def _follow(self, index: Index, writer: IndexWriter, feed: ChangeFeed) -> None:
        while not self.stop.is_set():
            wait = min(0.25, self.debounce / 2) if self.pending else 1.0
            for path in feed.get(timeout=wait):
                now = time.monotonic()
                for p in (self.roots if path == RESCAN_ALL else [path]):
                    if self._relevant(p):
                        self.pending[p] = now
            due = self._due()
            if due:
                for p in due:
                    del self.pending[p]
                existing = [p for p in due if os.path.lexists(p)]
                vanished = [p for p in due if p not in set(existing)]
                self._pass(index, writer, existing, vanished)

    def _due(self) -> list[str]:
        """Paths untouched for the debounce, once the burst is over (or it has lasted a commit
        interval, or a full batch is waiting): a sync of thousands of files commits as it goes."""
        if not self.pending:
            return []
        now = time.monotonic()
        due = [p for p, t in self.pending.items() if now - t >= self.debounce]
        if not due:
            return []
        quiet = len(due) == len(self.pending)
        waited = now - min(self.pending[p] for p in due) - self.debounce
        if quiet or waited >= self.options.commit_seconds or len(due) >= 1024:
            return due
        return []

    def _pass(self, index: Index, writer: IndexWriter, paths: list[str], vanished: list[str],
              catch_up: bool = False) -> None:
        started = time.perf_counter()
        roots, vanished = _collapse(paths, vanished, self.roots)
        options = self.options
        if not catch_up and all(not os.path.isdir(r) for r in roots) and len(roots) <= IN_PROCESS_FILES:
            options = replace(options, workers=0)
        report = IndexReport()
        new_index = index.identity is None
        self.embedder, held = index_pass(index, writer, roots, options, report, embedder=self.embedder,
                                         vanished=vanished, finish=False, hold=self._hold,
                                         keep_failure=self._keep_failure, cancel=self.stop)
        now = time.monotonic()
        for p in held:
            self.pending[p] = now
        report.seconds = time.perf_counter() - started
        batch = WatchBatch.from_report(report, catch_up)
        self.unsaved += batch.changes
        if self.stop.is_set():
            pass  # saved once on the way out
        elif catch_up or (new_index and index.identity is not None):
            self._save(writer)
        elif self.unsaved >= SAVE_AFTER_CHANGES or (self.unsaved and now - self.last_save >= SAVE_AFTER_SECONDS):
            self._save(writer)
        if catch_up or batch.changes:
            self.on_batch(batch)

    def _save(self, writer: IndexWriter) -> None:
        writer.finish(self.embedder)
        self.unsaved = 0
        self.last_save = time.monotonic()

    # -- files still being written --------------------------------------------------------------

    def _hold(self, entry: FileEntry) -> bool:
        """Hold back a file written less than the debounce ago (unless it has not changed since it
        was last held: an mtime in the future, from another machine's clock, must not hold forever)."""
        age = time.time() - entry.mtime_ns / 1e9
        if age >= self.debounce or self.held_stats.get(entry.path) == (entry.size, entry.mtime_ns):
            self.held_stats.pop(entry.path, None)
            return False
        self.held_stats[entry.path] = (entry.size, entry.mtime_ns)
        return True

    def _keep_failure(self, path: str, size: int, mtime_ns: int) -> bool:
        """Record a failure only for a file that is there, unchanged since it was read, and settled."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False  # gone: its pass will see it gone
        except OSError:
            return True
        if size < 0:
            return True
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns) or time.time() - st.st_mtime_ns / 1e9 < SETTLE_SECONDS:
            log.info("%s is still changing; trying again when it settles", path)
            self.pending[path] = time.monotonic()
            return False
        return True


def _collapse(paths: Iterable[str], vanished: Iterable[str], roots: list[str]) -> tuple[list[str], list[str]]:
    """Few roots for one pass: paths inside another are dropped, and past
    :data:`MAX_ROOTS_PER_PASS` each is replaced by its folder (never above its watched root), so
    the catalog is asked about a handful of folders instead of thousands of files."""
    tops = set(roots)
    existing, gone = set(paths), set(vanished)
    while len(existing) + len(gone) > MAX_ROOTS_PER_PASS:
        lifted = {p if p in tops else os.path.dirname(p) for p in existing | gone}
        if lifted == existing | gone:
            break
        existing, gone = {p for p in lifted if os.path.lexists(p)}, {p for p in lifted if not os.path.lexists(p)}
    every = sorted(existing | gone)
    inside = {p for p in every if any(p != q and p.startswith(q.rstrip(os.sep) + os.sep) for q in every)}
    return sorted(existing - inside), sorted(gone - inside)
