"""Files whose bytes were checked once, and need not be hashed again until they change.

A file found to match its hash is trusted again while its identity and times stay the same:
device, inode, size, modification and status-change time. Any write changes the modification
time and the status-change time (which no user call can set back), and a rename over the path
gives another inode, so a damaged or replaced file is hashed again and caught. Bit rot under
unchanged metadata is not caught here. ``searchlib verify`` never uses these memos; it hashes
every byte.

* :class:`CheckedFiles`: in one process, bounded. A photo or video served by ``serve`` or
  thumbnailed is checked against its indexed content hash once, not on every view.
* :func:`matches`: kept across processes in the user cache (``SEARCHLIB_CACHE``/``checked``). A
  cold ``searchlib search`` would otherwise hash the FAISS file and the text tower on every run:
  about 0.4 s each for 200-250 MB files on 2 cores. A cache that cannot be written only costs the
  hashing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from .tempfiles import temp_beside

log = logging.getLogger(__name__)

#: Read size for hashing through a file descriptor.
CHUNK = 1 << 20


def identity_of(st: os.stat_result) -> tuple[int, ...]:
    """What says a file is unchanged since it was hashed: device, inode, size, mtime, ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class CheckedFiles:
    """Remembers which files matched their content hash (:func:`searchlib.records.content_hash`),
    by path and hash, with their :func:`identity_of` when checked. Thread-safe; the oldest entries
    go past ``capacity``."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def same_bytes(self, fd: int, st: os.stat_result, path: str, digest: str) -> bool:
        """Whether the open regular file ``fd`` (its ``fstat`` is ``st``) at ``path`` holds the
        bytes whose sha256 is ``digest``: hashed the first time, then only after it changed."""
        key, seen = (path, digest), identity_of(st)
        with self._lock:
            if self._seen.get(key) == seen:
                self._seen.move_to_end(key)
                return True
        from .records import content_hasher

        sha, offset = content_hasher(), 0
        while chunk := os.pread(fd, CHUNK, offset):
            sha.update(chunk)
            offset += len(chunk)
        if sha.hexdigest() != digest:
            return False
        with self._lock:
            self._seen[key] = seen
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return True


def _memo_path(path: Path) -> Path:
    from .config import cache_dir

    key = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:32]
    return cache_dir() / "checked" / f"{key}.json"


def matches(path: Path, expected: str, compute: Callable[[Path], str]) -> bool:
    """Whether ``compute(path)`` (a checksum such as :func:`searchlib.vectors.file_checksum`)
    equals ``expected``, without computing it when this file, unchanged since
    (:func:`identity_of`), already matched ``expected`` in an earlier run.

    Raises:
        OSError: the file cannot be read.
    """
    before = os.stat(path)
    if known_match(path, expected, before):
        return True
    if compute(path) != expected:
        return False
    remember_match(path, expected, before)
    return True


def known_match(path: Path, expected: str, st: os.stat_result) -> bool:
    """Whether the file at ``path`` (``st``: its stat, or the fstat of a descriptor open on it)
    matched ``expected`` in an earlier run and has not changed since."""
    try:
        known = json.loads(_memo_path(path).read_text())
        return known.get("checksum") == expected and tuple(known.get("identity", ())) == identity_of(st)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def remember_match(path: Path, expected: str, before: os.stat_result) -> None:
    """Record that the file at ``path`` matched ``expected`` when hashed; ``before`` is its stat
    from before the hashing (nothing is recorded if it was written meanwhile)."""
    after = os.stat(path)
    if identity_of(after) != identity_of(before):  # written while it was read
        return
    memo = _memo_path(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(memo)
        tmp.write_text(json.dumps({"path": os.fsdecode(os.path.realpath(path)), "checksum": expected,
                                   "identity": list(identity_of(after))}))
        os.replace(tmp, memo)
    except OSError as e:  # a read-only cache: the next run hashes again
        log.debug("cannot remember the check of %s (%s)", path, e)
