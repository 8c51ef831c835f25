"""The decode pipeline: read, hash and preprocess image files in worker processes.

Workers import Pillow and numpy only (never torch), start with ``spawn`` so they inherit no
threads from the parent, and hand back uint8 pixels, which are four times smaller than floats.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np

from searchlib.errors import ImageDecodeError
from searchlib.imaging import Preprocess, decode_for_model

from .scan import FileEntry


@dataclass
class Decoded:
    """A file read and preprocessed for the model."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    metadata: dict
    pixels: np.ndarray


@dataclass
class Failed:
    """A file that could not be used, with the reason."""

    path: str
    error: str


def decode_file(entry: FileEntry, prep: Preprocess, max_pixels: int | None) -> Decoded | Failed:
    """Read one file completely, hash all of its bytes, decode it. Never raises."""
    try:
        with open(entry.path, "rb") as handle:
            st = os.fstat(handle.fileno())
            data = handle.read()
    except OSError as e:
        return Failed(entry.path, f"cannot read: {e.strerror or e}")
    try:
        pixels, meta = decode_for_model(data, prep, max_pixels=max_pixels)
    except ImageDecodeError as e:
        return Failed(entry.path, str(e))
    except Exception as e:  # a decoder bug must cost one file, not the run
        return Failed(entry.path, f"cannot decode image ({type(e).__name__}: {e})")
    fields = asdict(meta)
    fields.pop("extra", None)
    return Decoded(entry.path, len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest(), fields, pixels)


def _worker(args: tuple[FileEntry, Preprocess, int | None]) -> Decoded | Failed:
    return decode_file(*args)


def default_workers() -> int:
    """Decode processes: every core but one for the model, at least one."""
    return max(1, (os.cpu_count() or 1) - 1)


def decode_stream(entries: Iterable[FileEntry], prep: Preprocess, workers: int | None = None,
                  max_pixels: int | None = None) -> Iterator[Decoded | Failed]:
    """Decode ``entries`` ahead of the consumer, in ``workers`` processes (0 = in this process)."""
    workers = default_workers() if workers is None else workers
    jobs = ((e, prep, max_pixels) for e in entries)
    if workers <= 0:
        yield from map(_worker, jobs)
        return
    # A bounded window of submitted jobs: decoding runs ahead of the model, but never so far that
    # decoded pixels pile up in memory (Pool.imap would submit the whole folder at once).
    window = workers * 8
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pending: deque = deque(pool.apply_async(_worker, (job,)) for job in islice(jobs, window))
        while pending:
            result = pending.popleft().get()
            for job in islice(jobs, 1):
                pending.append(pool.apply_async(_worker, (job,)))
            yield result
