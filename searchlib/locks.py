"""File locks of an index directory: one writer at a time, and one writer of the cache files.

Both are ``flock`` locks, released by the kernel when their process dies, so a killed indexer never
leaves a stale lock behind. The writer lock guards the catalog of a SQLite index; a PostgreSQL
catalog is guarded by the database itself (see :mod:`searchlib.catalog`). The cache lock guards the
derived files of this machine (the FAISS file and its stamp, the exported text tower): whoever
writes them holds it, so a file and its stamp always come from the same writer.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .config import LOCK_FILE as WRITER_LOCK
from .errors import IndexBusyError, IndexReadOnlyError, read_only_error

log = logging.getLogger(__name__)

CACHE_LOCK = "cache.lock"
#: Temp files that writers of cache files leave behind when killed (see ``_atomic_write_bytes``).
TEMP_PATTERNS = (".vectors.faiss.*.tmp", ".vectors.stamp.json.*.tmp", ".text_encoder.onnx.*.tmp*",
                 ".text_encoder.json.*.tmp", ".tokenizer*.tmp", "thumbnails/*/.*.tmp")


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise read_only_error(f"the index at {path.parent}") from e
        raise


def try_lock(path: Path) -> int | None:
    """Take ``path``'s lock without waiting: its fd, or None when another process holds it."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise


@contextmanager
def writer_lock(directory: Path):
    """Hold the index's exclusive writer lock (readers are never blocked).

    Raises:
        IndexBusyError: another process is writing to this index.
        IndexReadOnlyError: the directory cannot be written.
    """
    path = directory / WRITER_LOCK
    fd = try_lock(path)
    if fd is None:
        holder = _holder(path)
        raise IndexBusyError(f"another searchlib process (pid {holder}) is indexing into {directory}; "
                             "wait for it to finish and run again")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def cache_lock(directory: Path, wait: float = 60.0):
    """Hold the lock on this directory's cache files (waits up to ``wait`` seconds; yields False
    if it could not be had, or the directory is read-only: the caller then skips saving)."""
    deadline = time.monotonic() + wait
    try:
        fd = try_lock(directory / CACHE_LOCK)
        while fd is None and time.monotonic() < deadline:
            time.sleep(0.05)
            fd = try_lock(directory / CACHE_LOCK)
    except (IndexReadOnlyError, OSError) as e:
        log.info("cannot lock %s: %s", directory / CACHE_LOCK, e)
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def remove_stale_temp_files(directory: Path) -> int:
    """Remove temp files that killed writers left in ``directory``; call with the cache lock held
    (no live writer of those files can exist then). Returns how many were removed."""
    removed = 0
    for pattern in TEMP_PATTERNS:
        for path in directory.glob(pattern):
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    if removed:
        log.info("removed %d temp files left by interrupted runs in %s", removed, directory)
    return removed
