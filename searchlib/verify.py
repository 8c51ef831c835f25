"""``verify``: check that the catalog, the caches and the files on disk agree; repair them.

Findings are of two kinds. *Problems* need attention (``verify`` exits 1 until they are repaired):
a damaged catalog, rows without a valid vector, orphan vectors, files gone from disk, a FAISS file
or exported text tower whose bytes no longer match their checksum. *Notes* heal by themselves: a
missing or stale FAISS file is rebuilt or caught up by the next reader, a missing text tower is
exported by the next index run. Neither is an error.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from .catalog import ChangeSet
from .config import VECTORS_FILE, VECTORS_STAMP_FILE
from .errors import IndexCorruptError
from .index import Index
from .vectors import Stamp, file_checksum

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """What ``verify`` found (and, with repair, did). ``ok``: no problems (notes are fine)."""

    images: int = 0
    stored_vectors: int = 0
    catalog: str = "ok"  # ok | damaged (...)
    faiss_file: str = "ok"  # ok | missing | stale | corrupt
    faiss_problem: str = ""  # what is corrupt, when more than the FAISS file itself (on-disk lists)
    text_encoder: str = "ok"  # ok | missing | corrupt | none (the model has no export)
    rows_without_vector: list[int] = field(default_factory=list)
    orphan_vectors: list[int] = field(default_factory=list)
    bad_vectors: list[int] = field(default_factory=list)  # wrong size, not unit norm, NaN
    missing_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)  # indexed, but failed to read as they are now
    changed_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    _missing_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def problems(self) -> list[str]:
        """What needs attention (empty when the index is sound)."""
        out = []
        if self.catalog != "ok":
            out.append(f"catalog {self.catalog}")
        if self.faiss_file == "corrupt":
            out.append(f"FAISS index: {self.faiss_problem}" if self.faiss_problem
                       else "the FAISS file does not match its checksum")
        if self.text_encoder == "corrupt":
            out.append("the exported text tower does not match its checksum")
        for label, items in [("rows without a vector", self.rows_without_vector),
                             ("orphan vectors", self.orphan_vectors), ("invalid vectors", self.bad_vectors),
                             ("missing files", self.missing_files),
                             ("indexed files that can no longer be read", self.unreadable_files)]:
            if items:
                out.append(f"{label}: {len(items)}")
        return out

    @property
    def ok(self) -> bool:
        """True when nothing needs repair (changed files only need 'searchlib index')."""
        return not self.problems

    def to_dict(self) -> dict:
        from .records import path_fields

        out = {"ok": self.ok, "problems": self.problems}
        for k, v in self.__dict__.items():
            if k.startswith("_"):
                continue
            if k in ("missing_files", "changed_files", "unreadable_files"):
                v = [path_fields(p)["path"] for p in v]
            out[k] = v
        return out


def _faiss_state(index: Index, generation: int, count: int, dim: int, report: VerifyReport) -> str:
    path, stamp_path = index.directory / VECTORS_FILE, index.directory / VECTORS_STAMP_FILE
    if not path.exists() or not stamp_path.exists():
        report.notes.append("no FAISS file: the next search builds it from the catalog")
        return "missing"
    stamp = Stamp.read(stamp_path)
    if stamp is None or not stamp.checksum:
        report.notes.append("the FAISS stamp is unreadable or old: the next search rebuilds the file")
        return "stale"
    if stamp.kind == "ondisk":
        from .ondisk import files_problem

        problem = files_problem(index.directory, path, stamp)
        if problem:
            report.faiss_problem = problem
            return "corrupt"
    elif path.stat().st_size != stamp.file_size or file_checksum(path) != stamp.checksum:
        return "corrupt"
    if (stamp.generation, stamp.count, stamp.dim) != (generation, count, dim):
        report.notes.append(f"the FAISS file reflects generation {stamp.generation}, the catalog is at "
                            f"{generation}: the next search catches it up")
        return "stale"
    return "ok"


def _text_state(index: Index, report: VerifyReport) -> str:
    from .textenc import ONNX_FILE, export_is_current, read_checksum, tower_problem
    from .textquant import INT8_FILE, read_int8_note
    from .tokenizing import tokenizer_kind

    ident = index.identity
    if ident is None:
        return "ok"
    if not export_is_current(index.directory, ident):
        if tokenizer_kind(ident.arch) is None:
            return "none"
        report.notes.append("no usable exported text tower: the next index run (or query) exports it")
        return "missing"
    problem = tower_problem(index.directory, ONNX_FILE, str(read_checksum(index.directory)))
    if problem is not None:
        report.notes.append(f"the text tower: {problem}")
        return "corrupt"
    int8 = read_int8_note(index.directory)
    if int8 is not None and tower_problem(index.directory, INT8_FILE, str(int8.get("checksum"))) is not None:
        report.notes.append("the int8 text tower does not match its checksum: queries use the fp32 tower, and "
                            "the next index run makes it again")
    return "ok"


def verify(index: Index, repair: bool = False, check_files: bool = True) -> VerifyReport:
    """Check the index; with ``repair``, fix what can be fixed and check again.

    Repair removes rows without a valid vector, rows whose file is gone and rows of files that an
    index run could not read as they are now (the next ``searchlib index`` re-embeds files that
    still exist and have changed since), removes orphan vectors, and rebuilds
    the FAISS file and the text tower from the catalog and the model. It takes the writer lock,
    so it waits for no running indexer: it fails with :class:`~searchlib.errors.IndexBusyError`.
    """
    report = _check(index, check_files)
    if repair and (not report.ok or report.faiss_file != "ok"):
        actions = _repair(index, report)
        report = _check(index, check_files)
        report.repaired = actions
    return report


def _check(index: Index, check_files: bool) -> VerifyReport:
    report = VerifyReport()
    catalog = index.catalog
    try:
        problem = catalog.quick_check()
    except IndexCorruptError as e:  # so damaged that even opening it for the check fails
        problem = str(e)
    if problem:
        report.catalog = f"damaged ({problem})"
        return report
    ident = index.identity
    dim = ident.dim if ident else 0
    found = catalog.consistency(dim)
    report.images, report.stored_vectors = found.images, found.stored_vectors
    report.rows_without_vector, report.orphan_vectors = found.rows_without_vector, found.orphan_vectors
    report.bad_vectors = found.bad_vectors
    if check_files:
        failed = catalog.failed_files()
        listed: set[str] = set()  # a video has a row per segment: its path is listed once
        for image_id, path, size, mtime_ns in catalog.iter_file_states():
            try:
                st = os.stat(path)
            except OSError:
                if path not in listed:
                    report.missing_files.append(path)
                report._missing_ids.append(image_id)
                listed.add(path)
                continue
            failure = failed.get(path)
            if failure is not None and (failure.size, failure.mtime_ns) == (st.st_size, st.st_mtime_ns):
                # An index run failed to read these very bytes and (before searchlib dropped such rows)
                # kept the old row: its vector answers for an image that is not there any more.
                if path not in listed:
                    report.unreadable_files.append(path)
                report._missing_ids.append(image_id)
                listed.add(path)
            elif (st.st_size, st.st_mtime_ns) != (size, mtime_ns) and path not in listed:
                report.changed_files.append(path)
                listed.add(path)
    if ident is not None:
        report.faiss_file = _faiss_state(index, catalog.generation(), found.stored_vectors, dim, report)
        report.text_encoder = _text_state(index, report)
    return report


def _repair(index: Index, report: VerifyReport) -> list[str]:
    from .textenc import remove_export

    actions: list[str] = []
    if report.catalog != "ok":
        return actions  # a damaged database is not something to write into
    with index.writer() as writer:
        drop = set(report.rows_without_vector) | set(report.bad_vectors) | set(report._missing_ids)
        drop -= set(report.orphan_vectors)
        if drop or report.orphan_vectors:
            writer.apply(ChangeSet(removed=sorted(drop | set(report.orphan_vectors))))
            actions.append(f"removed {len(drop)} rows and {len(report.orphan_vectors)} orphan vectors")
        if index.identity is None:
            return actions
        if report.text_encoder == "corrupt":
            remove_export(index.directory)
        writer.invalidate_vectors(delete_files=True)
        writer.finish()
        actions.append(f"rebuilt the FAISS index ({index.vectors.ntotal} vectors)")
        if report.text_encoder == "corrupt":
            actions.append("exported the text tower again")
    return actions
