"""The decode pipeline: read, hash and preprocess image files in worker processes.

Workers import Pillow and numpy only (never torch). They are fresh interpreters running
:mod:`searchlib.indexer.worker`, so they inherit no threads from the parent and never import the
caller's ``__main__``: ``index_folder`` works from a plain script without an
``if __name__ == "__main__":`` guard. They hand back uint8 pixels, four times smaller than floats.
A file whose bytes are already in the catalog (a move or a copy) is hashed but not decoded: its
stored vector is reused. A file that hangs or crashes its decoder costs that file only: after
``timeout`` seconds the pool is replaced and the other files go on.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from multiprocessing.connection import Connection

import numpy as np
from PIL import ImageOps

from searchlib.errors import ImageDecodeError
from searchlib.imaging import Preprocess
from searchlib.jpeginfo import jpeg_info
from searchlib.media import decode_file_bytes, file_metadata, is_raw_name, is_video_name
from searchlib.records import ImageMetadata, ImageRecord, Segment, content_hash, content_hasher

from .scan import FileEntry
from .split import MovingMean

log = logging.getLogger(__name__)

#: Seconds one file may take to decode before it is reported as a failure and its worker replaced.
DECODE_TIMEOUT = 60.0
#: Extra seconds a file may take when its words are read (the detector on a big photo, cold).
TEXT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Decoded:
    """A file read and (unless its bytes are known) preprocessed for the model.

    ``pixels`` is None when the content hash is already in the catalog, or when ``for_device``:
    the file is a JPEG the device decoder handles, and the device stage reads and decodes it (from
    the page cache: passing 4 MB of bytes back through the pool's pipe is slower than that, and
    would cap 12 MP files at a few hundred per second).
    """

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    metadata: ImageMetadata
    pixels: np.ndarray | None
    for_device: bool = False
    seconds: float = 0.0  # worker time spent on this file (feeds the CPU/device decode split)
    offered: bool = False  # the file was offered to the device decoder
    # A video as the worker hands it back: its segments, ``pixels`` then ``(n, S, S, 3)``, one per
    # segment. The committer splits it into one item per segment (``segment`` set, ``parts`` = n).
    segments: tuple[Segment, ...] = ()
    segment: Segment | None = None
    parts: int = 1

    @property
    def record(self) -> ImageRecord:
        """What the catalog stores about this item."""
        return ImageRecord(self.path, self.size, self.mtime_ns, self.content_hash, self.metadata, self.segment)

    def items(self) -> list[Decoded]:
        """A video's segments as items of their own (each with its frame), or this image."""
        if not self.segments:
            return [self]
        return [replace(self, pixels=self.pixels[i], segments=(), segment=seg, parts=len(self.segments))
                for i, seg in enumerate(self.segments)]


@dataclass(frozen=True)
class Failed:
    """A file that could not be used, with the reason (and its size and mtime when known)."""

    path: str
    error: str
    size: int = -1
    mtime_ns: int = -1


def hash_key(content_hash: str) -> int:
    """64-bit key of a hex SHA-256, for compact membership tests in workers."""
    return int(content_hash[:16], 16)


_known_keys = np.zeros(0, dtype=np.uint64)


def init_worker(known_keys: np.ndarray) -> None:
    """Give this worker process the sorted 64-bit keys of the content hashes already indexed."""
    global _known_keys
    _known_keys = known_keys


def _is_known(content_hash: str) -> bool:
    if not len(_known_keys):
        return False
    key = np.uint64(hash_key(content_hash))
    pos = int(np.searchsorted(_known_keys, key))
    return pos < len(_known_keys) and _known_keys[pos] == key


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """A descriptor of a regular file and its stat. Non-blocking open, so a FIFO swapped in cannot
    hang the run."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ImageDecodeError("not a regular file")
    return fd, st


def read_file(path: str) -> tuple[bytes, os.stat_result]:
    """Read a regular file whole."""
    fd, st = _open_regular(path)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 22):
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def decode_file(entry: FileEntry, prep: Preprocess, max_pixels: int | None,
                skip_known: bool = True, offer_device: bool = False, read_text: bool = False) -> Decoded | Failed:
    """Read one file completely, hash all of its bytes, decode it. Never raises.

    With ``offer_device``, a JPEG the device decoder handles (:mod:`searchlib.jpeginfo`) is not
    decoded here: its metadata is read from the header and it is marked ``for_device``. With
    ``read_text``, the words in a decoded image are read (:mod:`searchlib.ocr`); a file whose bytes
    are known gets the stored text later, from the catalog.
    """
    started = time.perf_counter()
    if is_video_name(entry.path):
        return decode_video_file(entry, prep, max_pixels, started)
    try:
        data, st = read_file(entry.path)
    except ImageDecodeError as e:
        return Failed(entry.path, str(e), entry.size, entry.mtime_ns)
    except OSError as e:
        return Failed(entry.path, f"cannot read: {e.strerror or e}", entry.size, entry.mtime_ns)
    digest = content_hash(data)
    name = entry.path
    try:
        for_device = False
        if skip_known and _is_known(digest):
            pixels, meta = None, file_metadata(name, data, max_pixels)
        elif (offer_device and not is_raw_name(name) and (info := jpeg_info(data)) is not None
              and info.device_decodable):
            pixels, meta, for_device = None, file_metadata(name, data, max_pixels), True
        else:
            pixels, meta = decode_file_bytes(name, data, prep, max_pixels=max_pixels)
            if read_text:
                meta = replace(meta, text=text_in_image(name, data, max_pixels))
    except ImageDecodeError as e:
        return Failed(entry.path, str(e), len(data), st.st_mtime_ns)
    except Exception as e:  # a decoder bug must cost one file, not the run
        return Failed(entry.path, f"cannot decode image ({type(e).__name__}: {e})", len(data), st.st_mtime_ns)
    return Decoded(entry.path, len(data), st.st_mtime_ns, digest, meta, pixels, for_device,
                   time.perf_counter() - started, offer_device)


def hash_file(path: str) -> tuple[str, os.stat_result]:
    """The content hash of a regular file, read in pieces (a video need not fit in memory)."""
    fd, st = _open_regular(path)
    try:
        digest = content_hasher()
        while chunk := os.read(fd, 1 << 22):
            digest.update(chunk)
        return digest.hexdigest(), st
    finally:
        os.close(fd)


def decode_video_file(entry: FileEntry, prep: Preprocess, max_pixels: int | None, started: float) -> Decoded | Failed:
    """A video's segments with one frame each (:mod:`searchlib.media.video`). Never raises.

    A video is always decoded, even when its bytes are known: its vectors are one per segment,
    which a content hash alone cannot look up."""
    from searchlib.media.video import TIME_BUDGET, decode_video

    try:
        digest, st = hash_file(entry.path)
    except ImageDecodeError as e:
        return Failed(entry.path, str(e), entry.size, entry.mtime_ns)
    except OSError as e:
        return Failed(entry.path, f"cannot read: {e.strerror or e}", entry.size, entry.mtime_ns)
    if st.st_size == 0:
        return Failed(entry.path, "empty file (0 bytes)", 0, st.st_mtime_ns)
    try:
        # The hash of a big file takes its share of the per-file time limit.
        budget = max(5.0, TIME_BUDGET - (time.perf_counter() - started))
        video = decode_video(entry.path, entry.path, prep, max_pixels, time_budget=budget)
    except ImageDecodeError as e:
        return Failed(entry.path, str(e), st.st_size, st.st_mtime_ns)
    except Exception as e:  # a decoder bug must cost one file, not the run
        return Failed(entry.path, f"cannot decode video ({type(e).__name__}: {e})", st.st_size, st.st_mtime_ns)
    return Decoded(entry.path, st.st_size, st.st_mtime_ns, digest, video.metadata, video.pixels,
                   seconds=time.perf_counter() - started, segments=video.segments, parts=len(video.segments))


def text_in_image(name: str, data: bytes, max_pixels: int | None) -> str:
    """The words read in a file's picture ('' when none; a RAW is read from its preview). A reading
    failure costs the text, never the file: it is logged and the image is indexed without words."""
    from searchlib.imaging import open_image
    from searchlib.media.raw import read_raw
    from searchlib.ocr import READ_SIDE, shared_reader

    try:
        if is_raw_name(name):
            img = read_raw(data, READ_SIDE // 2, max_pixels).image
        else:
            img = open_image(data, max_pixels)
            img.draft("RGB", (READ_SIDE, READ_SIDE))  # JPEG: decode at a fraction of the size, much faster
            img = ImageOps.exif_transpose(img)
        return shared_reader().read(img) or ""
    except Exception as e:  # an OCR failure must not fail the photo
        log.warning("could not read text: %s", e)
        return ""


def _decode_job(args: tuple) -> Decoded | Failed:
    """``args``: ``(entry, prep, max_pixels, offer_device, read_text)``, as :func:`decode_stream`
    makes them."""
    entry, prep, max_pixels, offer_device, *rest = args
    return decode_file(entry, prep, max_pixels, offer_device=offer_device, read_text=bool(rest and rest[0]))


def _decode_chunk(worker: Callable[[tuple], Decoded | Failed], jobs: list[tuple]) -> list[Decoded | Failed]:
    return [worker(job) for job in jobs]


def default_workers() -> int:
    """Decode processes: one per core. Measured on 2 cores: 23 camera JPEGs/s with 2 workers
    against 18 with 1 (the workers and the model's threads share the cores well)."""
    return max(1, os.cpu_count() or 1)


#: Worker time one task should carry: small files travel in chunks, so that the per-task cost
#: (pickling, a pipe round trip, the parent's bookkeeping) stays small against the work.
CHUNK_SECONDS = 0.004
MAX_CHUNK = 32


class _Chunker:
    """Files per task, from the measured worker time per file (one until measured)."""

    def __init__(self) -> None:
        self.mean = MovingMean(weight=0.1)

    def observe(self, values: list) -> None:
        for v in values:
            if isinstance(v, Decoded) and v.seconds > 0:
                self.mean.add(v.seconds)

    @property
    def size(self) -> int:
        if self.mean.value is None:
            return 1
        return max(1, min(MAX_CHUNK, int(CHUNK_SECONDS / max(self.mean.value, 1e-6))))


def worker_loop(conn, keys: np.ndarray, worker: Callable[[tuple], Decoded | Failed]) -> None:
    """A decode process's loop: answer each chunk of jobs received on ``conn`` with its results.

    A worker whose parent is gone, even killed, notices at its next receive or send and exits.
    """
    init_worker(keys)
    while True:
        try:
            chunk = conn.recv()
            if chunk is None:
                return
            conn.send(_decode_chunk(worker, chunk))
        except (EOFError, OSError):  # the parent is gone
            return


def worker_environment() -> dict[str, str]:
    """A decode process's environment: the parent's, with one OpenMP thread. There is a worker per
    core already; LibRaw's demosaic (and any OpenMP code) spreading over every core in each worker
    would oversubscribe the machine and multiply its per-thread buffers."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


class _Worker:
    """One decode process (:mod:`searchlib.indexer.worker`) on a socket of its own, and the chunks it
    has been sent (in order)."""

    def __init__(self, keys: np.ndarray, worker: Callable[[tuple], Decoded | Failed]):
        parent, child = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from searchlib.indexer.worker import main; main()", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, close_fds=True, env=worker_environment())
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        # The child finds the worker function (a module-level callable, pickled by reference)
        # on the parent's import path.
        self.conn.send(list(sys.path))
        self.conn.send((keys, worker))
        self.sent: deque[tuple[int, int, list[tuple]]] = deque()  # (sequence, offset, jobs)
        self.busy_since = 0.0  # when it started on the first chunk of ``sent``

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def send(self, seq: int, offset: int, jobs: list[tuple]) -> None:
        if not self.sent:
            self.busy_since = time.monotonic()
        self.sent.append((seq, offset, jobs))
        try:
            self.conn.send(jobs)
        except OSError:
            # The process died since its last result (a file crashed it): the pool sees the
            # end of its pipe next and replaces it, sending these jobs again.
            log.debug("decode worker %d gone before a chunk could be sent", self.process.pid)

    def stop(self, kill: bool) -> None:
        try:
            if kill:
                self.process.kill()
            else:
                self.conn.send(None)
        except OSError:
            pass
        try:
            self.process.wait(0.1 if kill else 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


def decode_stream(entries: Iterable[FileEntry], prep: Preprocess, workers: int | None = None,
                  max_pixels: int | None = None, known_hashes: Iterable[str] = (),
                  timeout: float = DECODE_TIMEOUT, ahead: int = 64,
                  worker: Callable[[tuple], Decoded | Failed] | None = None,
                  route: Callable[[], bool] | None = None, read_text: bool = False) -> Iterator[Decoded | Failed]:
    """Decode ``entries`` ahead of the consumer, in ``workers`` processes (0 = in this process).

    Results come in the order of ``entries``.

    Each worker process has a pipe of its own and at most two chunks of files queued, so the
    parent knows which files a worker holds: one that hangs for ``timeout`` seconds, or dies, is
    replaced, and only its files are retried or reported. (``multiprocessing.Pool`` cost ~120 us
    of the parent's CPU per file here, mostly its worker-handler thread spinning while results
    wait in the pipe; these pipes cost ~8 us.)

    Args:
        known_hashes: content hashes already in the catalog; such files are not decoded.
        timeout: seconds a single file may take (worker processes only).
        ahead: files decoded ahead of the consumer; at least two model batches, so the workers
            keep decoding while the model runs.
        worker: the per-file function (module level, so spawned processes can import it);
            default :func:`decode_file` on ``(entry, prep, max_pixels, offer_device)``.
        route: called as each file is handed to a worker; True offers the file to the device
            decoder (it comes back marked :attr:`Decoded.for_device` if it is a JPEG it handles).
        read_text: read the words in each decoded image (no file is then offered to the device).
    """
    _worker = worker or _decode_job
    workers = default_workers() if workers is None else workers
    keys = np.unique(np.fromiter((hash_key(h) for h in known_hashes), dtype=np.uint64))
    # Lazy: the route is decided when a file is handed out, so the split can follow measurements.
    jobs = ((e, prep, max_pixels, bool(route and route()) and not read_text, read_text) for e in entries)
    if read_text:
        timeout += TEXT_TIMEOUT
    if workers <= 0:
        init_worker(keys)
        yield from map(_worker, jobs)
        return
    yield from _WorkerPool(workers, keys, _worker, timeout, max(workers * 8, ahead)).run(jobs)


class _WorkerPool:
    """Hands chunks of jobs to worker processes and yields their results in job order."""

    PER_WORKER = 2  # chunks queued per worker: one running, one ready to start

    def __init__(self, count: int, keys: np.ndarray, worker: Callable, timeout: float, window: int):
        self.keys, self.worker, self.timeout, self.window = keys, worker, timeout, window
        self.workers = [_Worker(keys, worker) for _ in range(count)]
        self.chunker = _Chunker()
        self.parts: dict[int, list] = {}  # sequence -> results so far (None: not yet)
        self.retry: deque[tuple[int, int, list[tuple]]] = deque()  # to send again, first
        self.in_flight = 0  # files handed out and not yet yielded
        self.next_seq = 0
        self.exhausted = False  # every job has been handed out

    def run(self, jobs: Iterator[tuple]) -> Iterator[Decoded | Failed]:
        from multiprocessing.connection import wait

        done_seq = 0
        try:
            while True:
                self._hand_out(jobs)
                # Yield whatever is complete, in order.
                while done_seq in self.parts and all(v is not None for v in self.parts[done_seq]):
                    values = self.parts.pop(done_seq)
                    done_seq += 1
                    self.in_flight -= len(values)
                    self.chunker.observe(values)
                    yield from values
                if self.exhausted and not self.parts:
                    return
                busy = [w for w in self.workers if w.sent]
                if not busy:
                    continue
                deadline = min(w.busy_since for w in busy) + self.timeout
                for conn in wait([w.conn for w in busy], timeout=max(0.0, deadline - time.monotonic())):
                    w = next(w for w in busy if w.conn is conn)
                    try:
                        values = conn.recv()
                    except (EOFError, OSError):
                        try:
                            w.process.wait(1)  # reaped, so its exit code is known
                        except subprocess.TimeoutExpired:
                            pass
                        self._replace(w, f"the decoder crashed (exit code {w.exitcode})")
                        continue
                    seq, offset, chunk = w.sent.popleft()
                    self.parts[seq][offset:offset + len(values)] = values
                    w.busy_since = time.monotonic()
                now = time.monotonic()
                for w in list(self.workers):
                    if w.sent and now - w.busy_since > self.timeout:
                        self._replace(w, f"decoding took longer than {self.timeout:g}s (skipped)")
        finally:
            for w in self.workers:
                w.stop(kill=not self.exhausted or bool(w.sent))

    def _hand_out(self, jobs: Iterator[tuple]) -> None:
        """Fill each worker's queue: retries first, then new chunks while the window has room."""
        for w in sorted(self.workers, key=lambda w: len(w.sent)):
            while len(w.sent) < self.PER_WORKER:
                if self.retry:
                    w.send(*self.retry.popleft())
                    continue
                if self.exhausted or self.in_flight >= self.window:
                    return
                chunk = list(islice(jobs, min(self.chunker.size, self.window - self.in_flight)))
                if not chunk:
                    self.exhausted = True
                    return
                self.parts[self.next_seq] = [None] * len(chunk)
                w.send(self.next_seq, 0, chunk)
                self.next_seq += 1
                self.in_flight += len(chunk)

    def _replace(self, w: _Worker, reason: str) -> None:
        """Replace a hung or dead worker. In its current chunk the culprit is not known: each of
        those files is retried alone, and a file alone is given up. Its queued chunks go again."""
        w.stop(kill=True)
        self.workers[self.workers.index(w)] = _Worker(self.keys, self.worker)
        seq, offset, chunk = w.sent.popleft()
        if len(chunk) > 1:
            self.retry.extend((seq, offset + i, [job]) for i, job in enumerate(chunk))
        else:
            entry = chunk[0][0]
            log.warning("%s: %s", entry.path, reason)
            self.parts[seq][offset] = Failed(entry.path, reason, entry.size, entry.mtime_ns)
        self.retry.extend(w.sent)
