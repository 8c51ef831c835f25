"""Serving an indexed file: the bytes that were indexed, or a 404.

A request names an image by id; the catalog gives its path, size and content hash. Since it was
indexed, the path may have become a symlink to a secret, a FIFO, a directory, or another file padded
to the indexed size with the indexed mtime; or it may be renamed while the request runs. So the file
is opened once (``O_NONBLOCK``: a FIFO must not hang a worker thread), the handle is ``fstat``-ed (a
regular file of the indexed size), its bytes are checked against the indexed content hash, and that
same handle is streamed: a rename or a swap after the open cannot change what is sent.

The catalog keeps no inode, and size and mtime can be forged by whoever can write the folder, so
the content hash is what decides. Checking it costs one read of the file (SHA-256 runs at about
650 MB/s here: 8 ms for a 5 MB photo); it is remembered per (device, inode, size, mtime, ctime),
which any rename over the path, link swap or write changes, so a photo viewed again costs an fstat.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from ..checked import CheckedFiles
from ..errors import ImageNotFoundError
from ..records import StoredImage

#: Bytes read per chunk, when hashing and when streaming.
CHUNK = 256 << 10


class VerifiedFiles:
    """Opens indexed files, checked against the catalog; remembers which handles' files it has
    already hashed (one per app: thread-safe, bounded)."""

    def __init__(self, capacity: int = 4096):
        self.checked = CheckedFiles(capacity)

    def open(self, row: StoredImage) -> tuple[BinaryIO, os.stat_result]:
        """An open handle on ``row``'s file, at offset 0, and its ``fstat``.

        Raises:
            ImageNotFoundError: the file is gone, or is not the indexed file any more.
        """
        rec = row.record
        try:
            fd = os.open(rec.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise ImageNotFoundError(f"image {row.id}'s file is gone from disk ({e.strerror or e}); "
                                     "run 'searchlib index' to update") from e
        try:
            st = os.fstat(fd)
            same = stat.S_ISREG(st.st_mode) and st.st_size == rec.size \
                and self.checked.same_bytes(fd, st, rec.path, rec.content_hash)
        except OSError as e:
            os.close(fd)
            raise ImageNotFoundError(f"image {row.id}'s file cannot be read ({e.strerror or e})") from e
        except BaseException:
            os.close(fd)
            raise
        if not same:
            os.close(fd)
            raise ImageNotFoundError(f"image {row.id}'s file is not the one indexed any more (it changed or was "
                                     "replaced); run 'searchlib index' to update")
        handle = os.fdopen(fd, "rb", buffering=0)
        return handle, st

def stream(handle: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (exclusive) of the open ``handle``, in chunks; closes it."""
    try:
        fd = handle.fileno()
        while start < end:
            chunk = os.pread(fd, min(CHUNK, end - start), start)
            if not chunk:  # shrunk in place since the check: stop (the client sees a short body)
                return
            start += len(chunk)
            yield chunk
    finally:
        handle.close()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``[start, end)`` a ``Range`` header asks of a ``size``-byte file, or None
    to send the whole file (no header, a header this server ignores, or several ranges).

    Raises:
        ValueError: the range lies wholly past the end (a 416).
    """
    if not header or not header.strip().lower().startswith("bytes=") or "," in header:
        return None
    first, sep, last = header.strip()[6:].strip().partition("-")
    if not sep or not (first or last) or not (first.isdigit() or not first) or not (last.isdigit() or not last):
        return None
    if not first:  # the last N bytes
        return (max(size - int(last), 0), size) if int(last) > 0 and size > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size:
        raise ValueError(f"bytes {start}- lie past the end of a {size}-byte file")
    return (start, end) if end > start else None


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as RFC 9110 says for
    this header; ``*`` matches any)."""
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == wanted for tag in header.split(","))
