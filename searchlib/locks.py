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
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import LOCK_FILE as WRITER_LOCK
from .errors import IndexBusyError, IndexReadOnlyError, read_only_error

log = logging.getLogger(__name__)

CACHE_LOCK = "cache.lock"
#: Temp files that writers of cache files leave behind when killed (see ``_atomic_write_bytes``).
TEMP_PATTERNS = (".vectors.faiss.*.tmp", ".vectors.stamp.json.*.tmp", ".text_encoder.onnx.*.tmp*",
                 ".text_encoder.weights.*.tmp", ".text_encoder.json.*.tmp", ".text_encoder.int8*.tmp*",
                 ".tokenizer*.tmp", "thumbnails/*/.*.tmp")


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


#: Work folders of on-disk builds (shards, the merged lists before they move into place).
BUILD_PREFIX = ".build-"
#: Held by the building process for as long as its folder is in use.
BUILD_LOCK = "building.lock"
#: A build folder without its lock file is this old at least before it counts as abandoned (the
#: builder creates the folder, then its lock: a folder seen in between is not abandoned).
UNLOCKED_BUILD_AGE = 60.0


@contextmanager
def build_folder(directory: Path) -> Iterator[Path]:
    """A work folder in ``directory`` for one on-disk build, locked while it is used and removed
    afterwards. A process killed meanwhile leaves it behind, unlocked (the kernel drops a dead
    process's ``flock``): :func:`remove_stale_build_folders` removes it later."""
    work = Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=directory))
    fd = try_lock(work / BUILD_LOCK)  # a new file: nobody else can hold it
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if fd is not None:
            os.close(fd)


def remove_stale_build_folders(directory: Path) -> int:
    """Remove the build folders of killed processes (at scale, each is the size of the lists);
    folders whose builder is alive (it holds their lock) are left alone. Returns how many went."""
    removed = 0
    for work in directory.glob(BUILD_PREFIX + "*"):
        try:
            if not work.is_dir():
                continue
            lock = work / BUILD_LOCK
            if not lock.exists():
                if time.time() - work.stat().st_mtime > UNLOCKED_BUILD_AGE:
                    shutil.rmtree(work)
                    removed += 1
                continue
            fd = try_lock(lock)
            if fd is None:
                continue  # its builder is still at work
            try:
                shutil.rmtree(work)
                removed += 1
            finally:
                os.close(fd)
        except (OSError, IndexReadOnlyError) as e:  # a read-only directory, or removed meanwhile
            log.info("cannot remove the build folder %s: %s", work, e)
    if removed:
        log.info("removed %d build folders left by interrupted runs in %s", removed, directory)
    return removed
