"""What an index run has to do: compare the files found under the roots with the catalog."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from searchlib.catalog import Catalog, FileState

from .options import IndexOptions
from .scan import FileEntry, ScanProblem, scan

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Files to read, rows under the roots, rows whose files are gone, failures no longer relevant."""

    todo: list[FileEntry] = field(default_factory=list)
    known: dict[str, FileState] = field(default_factory=dict)
    gone: dict[str, tuple[int, ...]] = field(default_factory=dict)  # path -> ids of rows whose file is gone
    failures_gone: list[str] = field(default_factory=list)  # remembered failures of vanished files
    held: list[str] = field(default_factory=list)  # files the caller's ``hold`` kept back (not read, not gone)

    def gone_ids(self) -> list[int]:
        """Every row id of the files that are gone (a video's segments included)."""
        return [i for ids in self.gone.values() for i in ids]


def make_plan(catalog: Catalog, roots: list[str], options: IndexOptions, report,
              scanned: Callable[[int], None] | None = None, vanished: Sequence[str] = (),
              hold: Callable[[FileEntry], bool] | None = None,
              keep_failure: Callable[[str, int, int], bool] | None = None) -> Plan:
    """Scan ``roots`` and sort every file: unchanged (counted), failed before (counted, not retried
    unless ``options.retry_failed``), or to read. ``scanned`` hears the running count.

    ``vanished`` are paths no longer on disk whose rows (and rows under them) are looked up but not
    scanned, so they are swept as gone. ``hold`` (the watcher's: a file still being written) keeps
    a file back: neither read nor gone, listed in :attr:`Plan.held`. ``keep_failure(path, -1, 0)``
    returning False for a path that could not be scanned means it is gone (deleted mid-scan): it is
    swept like any other vanished file instead of being reported.
    """
    looked_up = [*roots, *vanished]
    plan = Plan(known=catalog.file_states(looked_up))
    failed = {} if options.retry_failed else catalog.failed_files(looked_up)
    remembered = catalog.failed_files(looked_up) if options.retry_failed else failed
    seen: set[str] = set()
    for item in scan(roots, options.exclude, options.include_hidden, options.follow_symlinks, options.raw_pairs):
        if item.path in seen:  # reached twice (a root inside another, or listed twice)
            continue
        seen.add(item.path)  # a problem this time is no proof that the file is gone
        if scanned is not None and len(seen) % 1000 == 0:
            scanned(len(seen))
        if isinstance(item, ScanProblem):
            if keep_failure is not None and not keep_failure(item.path, -1, 0):
                seen.discard(item.path)
                continue
            report.fail(item.path, item.error)
            continue
        state = plan.known.get(item.path)
        before = failed.get(item.path)
        if state is not None and (state.size, state.mtime_ns) == (item.size, item.mtime_ns):
            report.unchanged += 1
        elif hold is not None and hold(item):
            plan.held.append(item.path)
        elif before is not None and (before.size, before.mtime_ns) == (item.size, item.mtime_ns):
            report.failed_before += 1
            log.info("%s failed before (%s); not retried", item.path, before.error)
        else:
            plan.todo.append(item)
    if scanned is not None:
        scanned(len(seen))
    # Mark and sweep: rows of files gone from the roots. Their vectors may come back as moves
    # (same bytes at a new path), so the sweep happens after the new files are placed.
    plan.gone = {path: state.all_ids for path, state in plan.known.items() if path not in seen}
    plan.failures_gone = [path for path in remembered if path not in seen]
    return plan
