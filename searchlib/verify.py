"""``verify``: check that the catalog, the FAISS cache and the files on disk agree; repair them."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select, text

from .catalog import EmbeddingRow, ImageRow
from .config import VECTORS_FILE, VECTORS_STAMP_FILE
from .index import Index
from .vectors import VectorIndex

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """What ``verify`` found (and, with repair, did)."""

    images: int = 0
    stored_vectors: int = 0
    faiss_file: str = "ok"  # ok | missing | stale | unreadable
    rows_without_vector: list[int] = field(default_factory=list)
    orphan_vectors: list[int] = field(default_factory=list)
    bad_vectors: list[int] = field(default_factory=list)  # wrong size, not unit norm, NaN
    missing_files: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    _missing_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when nothing needs repair (changed files only need 'searchlib index')."""
        return (self.faiss_file == "ok" and not self.rows_without_vector and not self.orphan_vectors
                and not self.bad_vectors and not self.missing_files)

    def to_dict(self) -> dict:
        return {"ok": self.ok, **{k: v for k, v in self.__dict__.items() if not k.startswith("_")}}


def _faiss_state(index: Index, generation: int, count: int, dim: int) -> str:
    path, stamp = index.directory / VECTORS_FILE, index.directory / VECTORS_STAMP_FILE
    if not path.exists() or not stamp.exists():
        return "missing"
    try:
        json.loads(stamp.read_text())
    except (OSError, ValueError):
        return "unreadable"
    loaded = VectorIndex.load(path, stamp, generation, count, dim, writable=False)  # mapped, not copied
    if loaded is None:
        try:
            import faiss as _faiss

            _faiss.read_index(str(path))
        except Exception:
            return "unreadable"
        return "stale"
    return "ok"


def verify(index: Index, repair: bool = False, check_files: bool = True) -> VerifyReport:
    """Check the index; with ``repair``, drop broken rows and rebuild the FAISS cache.

    Repair removes rows without a valid vector and rows whose file is gone (the next
    ``searchlib index`` re-embeds files that still exist), removes orphan vectors, and rebuilds the
    FAISS file from the catalog. It takes the writer lock, so it waits for no running indexer: it
    fails with :class:`~searchlib.errors.IndexBusyError` instead.
    """
    report = VerifyReport()
    catalog = index.catalog
    ident = index.identity
    dim = ident.dim if ident else 0
    with catalog.session() as s:
        report.images = s.scalar(text("SELECT count(*) FROM images")) or 0
        report.stored_vectors = s.scalar(text("SELECT count(*) FROM embeddings")) or 0
        report.rows_without_vector = list(s.scalars(text(
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM embeddings)")))
        report.orphan_vectors = list(s.scalars(text(
            "SELECT image_id FROM embeddings WHERE image_id NOT IN (SELECT id FROM images)")))
        for image_id, blob in s.execute(select(EmbeddingRow.image_id, EmbeddingRow.vector)):
            vec = np.frombuffer(blob, dtype=np.float32) if len(blob) % 4 == 0 else np.zeros(0)
            if vec.size != dim or not np.isfinite(vec).all() or abs(float(np.linalg.norm(vec)) - 1) > 1e-3:
                report.bad_vectors.append(image_id)
        if check_files:
            for image_id, path, size, mtime_ns in s.execute(
                    select(ImageRow.id, ImageRow.path, ImageRow.size, ImageRow.mtime_ns)):
                try:
                    st = os.stat(path)
                except OSError:
                    report.missing_files.append(path)
                    report._missing_ids.append(image_id)
                    continue
                if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                    report.changed_files.append(path)
    report.faiss_file = _faiss_state(index, catalog.generation(), catalog.count(), dim)
    if repair and not report.ok:
        _repair(index, report)
    return report


def _repair(index: Index, report: VerifyReport) -> None:
    catalog = index.catalog
    with index.writer():
        drop_rows = set(report.rows_without_vector) | set(report.bad_vectors) | set(report._missing_ids)
        drop_rows -= set(report.orphan_vectors)
        if drop_rows or report.orphan_vectors:
            catalog.delete_ids(sorted(drop_rows | set(report.orphan_vectors)))
            report.repaired.append(f"removed {len(drop_rows)} rows and {len(report.orphan_vectors)} orphan vectors")
        for name in (VECTORS_FILE, VECTORS_STAMP_FILE):
            (index.directory / name).unlink(missing_ok=True)
        index.invalidate_vectors()
        rebuilt = index.vectors  # rebuilt from the catalog and saved under the lock
        report.repaired.append(f"rebuilt the FAISS index ({rebuilt.ntotal} vectors)")
